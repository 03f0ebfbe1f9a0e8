// services/annotator.h — the simulated annotator of `clickdiff annotate`: where it clicks and how
// it scores a mask, following the protocol of interactive-segmentation benchmarks (NoC@Dice): the
// first click of a structure at the point inside it farthest from its boundary, each further click
// at the centre of the largest region where the mask is wrong about that structure (positive on a
// missed region, negative on a false one, or positive for the structure the truth has there). Pure
// functions on class-id grids; no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace clickdiff {

// A class-id grid, row-major.
struct LabelGrid {
  int width = 0;
  int height = 0;
  std::vector<int64_t> ids;  // width * height

  int64_t At(int x, int y) const { return ids[static_cast<size_t>(y) * width + x]; }
};

struct SimulatedClick {
  int x = 0;
  int y = 0;
  int class_id = 0;
  bool positive = true;  // false: the pixel is not `class_id` (a negative click)
};

// The first click on structure `class_id`: the pixel of `truth == class_id` farthest (Euclidean
// distance) from any pixel outside it, the image's border counting as outside; among equals the
// one nearest the structure's centroid. nullopt when `truth` has no pixel of the class.
std::optional<SimulatedClick> FirstClick(const LabelGrid& truth, int class_id);

// The next click on structure `class_id` for `mask`: the largest 4-connected region of missed
// pixels (truth is the class, mask is not: a positive click) or of false pixels (mask is the class,
// truth is not), at its pixel farthest from the region's boundary as above. On a false region the
// click names what the truth has there: a negative click (background) where it is background, a
// positive click of the other structure where it is one. Among regions of equal size a missed one
// first, then the first in row-major order. nullopt when mask and truth agree on the class
// everywhere. Precondition: same size.
std::optional<SimulatedClick> CorrectiveClick(const LabelGrid& truth, const LabelGrid& mask,
                                              int class_id);

// Dice of class `class_id`: 2|M ∩ T| / (|M| + |T|); 1 when neither has the class.
// Precondition: same size.
double ClassDice(const LabelGrid& truth, const LabelGrid& mask, int class_id);

}  // namespace clickdiff
