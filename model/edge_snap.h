// model/edge_snap.h — a mask's boundaries moved onto the image's own edges, at the image's own
// resolution (the network draws on a coarser grid, and its boundaries wander a cell or two).
//
// Geodesic competition in a band (the GeoS / DeepIGeoS family of edge-aware refinements): every
// pixel within `band` of another class may change class; the rest, and each class's centre line
// (so a structure thinner than the band keeps its middle), are seeds. For each class, what the
// image's edges add to the way from its seeds is the geodesic distance on the image
// (model::GeodesicDistance on the image scaled to [0,1] and blurred, so a step across an edge costs
// far more than one along it) less the same distance on a flat image. A band pixel takes the
// class whose way crosses the least edge, and only when its own class's way crosses more than a
// step's length beyond that: on a flat image nothing moves, corners and thin structures included;
// a boundary moves onto an edge inside the band, at most `band` pixels. Only the boundaries'
// bounding box (and a margin) is searched.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace clickdiff::model {

// The class ids of `mask` [H,W] int64 (in [0, num_classes)) with the boundary band reassigned as
// above, on `image` [C,H,W] float of the same size, in any units (scaled by its own range; a
// constant image leaves the mask as it is). `band` and `sigma` (the blur's standard deviation)
// are in pixels; band < 1 changes nothing. The result is a new int64 tensor on the mask's device;
// the work runs on the CPU. Throws c10::Error when image and mask differ in size.
torch::Tensor SnapToEdges(const torch::Tensor& image, const torch::Tensor& mask,
                          int64_t num_classes, int64_t band, double sigma);

}  // namespace clickdiff::model
