// The simulated annotator's protocol (services/annotator.h): where it clicks and how it scores.
#include "services/annotator.h"

#include <gtest/gtest.h>

namespace clickdiff {
namespace {

// A width x height grid of class 0 with the rectangle [x0, x1) x [y0, y1) set to `id`.
LabelGrid Grid(int width, int height) {
  return {width, height, std::vector<int64_t>(static_cast<size_t>(width) * height, 0)};
}
void Fill(LabelGrid& g, int x0, int y0, int x1, int y1, int64_t id) {
  for (int y = y0; y < y1; ++y) {
    for (int x = x0; x < x1; ++x) g.ids[static_cast<size_t>(y) * g.width + x] = id;
  }
}

TEST(AnnotatorTest, FirstClickIsTheObjectPointFarthestFromItsBoundary) {
  LabelGrid truth = Grid(20, 12);
  Fill(truth, 2, 2, 5, 5, 1);     // a small square of class 1 ...
  Fill(truth, 8, 1, 17, 10, 1);   // ... and a large one: its centre is the farthest point
  Fill(truth, 0, 11, 20, 12, 2);  // class 2: a strip along the image border
  std::optional<SimulatedClick> click = FirstClick(truth, 1);
  ASSERT_TRUE(click.has_value());
  EXPECT_EQ(click->x, 12);
  EXPECT_EQ(click->y, 5);
  EXPECT_EQ(click->class_id, 1);
  EXPECT_TRUE(click->positive);
  // The border counts as boundary: the strip's points are all one pixel from it; among equals
  // the one nearest the strip's centroid (9.5, 11), the first of the two.
  click = FirstClick(truth, 2);
  ASSERT_TRUE(click.has_value());
  EXPECT_EQ(click->y, 11);
  EXPECT_EQ(click->x, 9);
  EXPECT_FALSE(FirstClick(truth, 3).has_value());
}

TEST(AnnotatorTest, CorrectiveClickGoesToTheLargestErrorRegionWithItsSign) {
  LabelGrid truth = Grid(30, 10);
  Fill(truth, 0, 0, 15, 10, 1);
  LabelGrid mask = Grid(30, 10);
  Fill(mask, 0, 0, 10, 10, 1);  // misses columns 10-14 (50 pixels)
  Fill(mask, 20, 2, 23, 5, 1);  // and adds a 3x3 false region (9 pixels)
  std::optional<SimulatedClick> click = CorrectiveClick(truth, mask, 1);
  ASSERT_TRUE(click.has_value());
  EXPECT_TRUE(click->positive);
  EXPECT_EQ(click->x, 12);  // the middle of the missed band (rows 2-7 are equally far from its
  EXPECT_EQ(click->y, 4);   // edges and the image's: the nearest its centroid, row 4.5)
  EXPECT_EQ(click->class_id, 1);

  Fill(mask, 10, 0, 15, 10, 1);  // the band is found: the false region is what is left
  click = CorrectiveClick(truth, mask, 1);
  ASSERT_TRUE(click.has_value());
  EXPECT_FALSE(click->positive);
  EXPECT_EQ(click->x, 21);
  EXPECT_EQ(click->y, 3);

  Fill(mask, 20, 2, 23, 5, 0);  // mask and truth agree: nothing to click
  EXPECT_FALSE(CorrectiveClick(truth, mask, 1).has_value());
  // Another class's errors are not this class's.
  Fill(mask, 25, 0, 30, 10, 2);
  EXPECT_FALSE(CorrectiveClick(truth, mask, 1).has_value());
  // Class 1 drawn over structure 2: the click names structure 2 there.
  Fill(truth, 20, 0, 25, 10, 2);
  Fill(mask, 20, 0, 25, 10, 1);
  click = CorrectiveClick(truth, mask, 1);
  ASSERT_TRUE(click.has_value());
  EXPECT_TRUE(click->positive);
  EXPECT_EQ(click->class_id, 2);
  EXPECT_EQ(click->x, 22);
  EXPECT_EQ(click->y, 4);
}

TEST(AnnotatorTest, ClassDiceCountsOnlyTheClass) {
  LabelGrid truth = Grid(10, 10);
  Fill(truth, 0, 0, 4, 5, 1);  // 20 pixels
  LabelGrid mask = Grid(10, 10);
  Fill(mask, 0, 0, 4, 2, 1);  // 8 pixels, all inside
  Fill(mask, 6, 6, 8, 8, 2);  // class 2 elsewhere
  EXPECT_NEAR(ClassDice(truth, mask, 1), 2.0 * 8 / 28, 1e-12);
  EXPECT_DOUBLE_EQ(ClassDice(truth, mask, 2), 0.0);
  EXPECT_DOUBLE_EQ(ClassDice(truth, mask, 3), 1.0);  // in neither
}

}  // namespace
}  // namespace clickdiff
