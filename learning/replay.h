// learning/replay.h — the continuous trainer's view of the store: every stored image that has
// supervision (clicks, or a dense or partial label not kept for evaluation) as a training example
// on the model's grid, with a revision that grows whenever its supervision does.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "io/store.h"
#include "model/preprocess.h"
#include "model/training_example.h"
#include "schemas/events.pb.h"

namespace clickdiff {

struct ReplayExample {
  std::string image_key;  // keys::Image(dataset, image_id)
  uint64_t revision = 0;  // clicks + training labels stored for the image
  model::TrainingExample example;
  // A click map's image with the mask the service last served for it after a click (its stored
  // final mask, nodes/mask_cache.h, on the grid) on its unclicked pixels (model::LabelUnclicked);
  // none without such a mask (no mask drawn with clicks yet, a dense or partial label, or a stored
  // mask that does not fit the image). The mask may predate the newest click, whose own pixel it
  // then yields to, until the click's final mask replaces it.
  std::optional<model::TrainingExample> served;
};

// What a replay example trains as: its own supervision, and with `share` in (0, 1] its served
// version (ReplayExample::served) taking that share of the example's weight (all of it at 1).
std::vector<model::TrainingExample> Taught(const ReplayExample& e, double share);

// Who a pseudo-label is for: the student (drawn by the teacher: the moving average, or the twin),
// or the co-trained twin (drawn by the student). Each has its own record per image.
enum class Learner { kStudent, kTwin };

// The pseudo-labels family's key of an image's label for `learner`.
std::string PseudoLabelKey(const std::string& image_key, Learner learner);

// A stored pseudo-label as a (non-dense) example whose `known` pixels are the confident ones, and
// the model version whose round drew it.
struct StoredPseudo {
  model::TrainingExample example;
  uint64_t version = 0;
};

// A stored image without supervision at the model grid: what the teacher pseudo-labels.
struct UnsupervisedImage {
  std::string image_key;
  torch::Tensor grid;  // [C,R,R] float, C the model's image channels
  // Its stored pseudo-labels; none when it has not been labelled (for that learner) at this grid.
  std::optional<StoredPseudo> for_student;
  std::optional<StoredPseudo> for_twin;

  const std::optional<StoredPseudo>& For(Learner learner) const {
    return learner == Learner::kStudent ? for_student : for_twin;
  }
};

struct Replay {
  std::vector<ReplayExample> examples;
  std::vector<UnsupervisedImage> unsupervised;
  uint64_t clicks = 0;  // clicks behind the examples
  uint64_t labels = 0;  // training labels (dense or partial) behind the examples
  // Stored images left out because their records are unusable (kDataLoss or kInvalidArgument
  // from reading them: corrupt, truncated, non-finite grid, clicks or masks that do not fit).
  uint64_t unreadable = 0;
  // Usable images not in `examples` or `unsupervised` because the replay's memory budget is
  // spent (ReplayCache): they wait in the store for their turn. Their clicks and labels are in
  // `clicks` and `labels`.
  uint64_t waiting = 0;
};

// The model's input for a stored image: its grid as a [channels,R,R] tensor of its own, gray or
// colour turned into the `channels` the model takes (model::MatchChannels). Images are stored with
// the served model's channels (nodes/preprocess.h), so a conversion happens only for images stored
// under a model of the other kind: gray ones are repeated (exact); colour ones made gray keep the
// colour's window (less contrast than a gray store), as do colour images stored before colour was
// kept, which stay gray. Errors: kDataLoss when the record does not hold grid_channels x R x R
// values or a value that is not finite; kInvalidArgument for grid_channels other than 1 or 3.
Result<torch::Tensor> StoredGrid(const v1::StoredImage& stored, int64_t channels);

// Where a stored image sits on its grid: its size, the region preprocessing placed on the grid
// (StoredImage.region_*) and grid_resolution. Errors: model::MakeGridMapping's, with the image id.
Result<model::GridMapping> StoredGridMapping(const v1::StoredImage& stored);

// Row-major class-id bytes of a mask (`mapping`'s width x height, checked by the caller) ->
// [R,R] int64 on the grid (model::LabelMapToGrid: a partial label map keeps its unknown pixels),
// a tensor of its own. Errors: LabelMapToGrid's.
Result<torch::Tensor> BytesToGrid(const std::string& bytes, const model::GridMapping& mapping);

// The stored clicks of an image (key `image_key`, id `image_id` for errors) in key order, in the
// image's own pixels (model::ClicksToGrid places them on a grid). A click that does not parse is
// kDataLoss, or with `corrupt` skipped (with a warning) and counted there. Errors: store failures.
Result<std::vector<model::Click>> StoredClicks(const Store& store, const std::string& image_key,
                                               const std::string& image_id,
                                               uint64_t* corrupt = nullptr);

// Reads images, clicks, labels, the masks served for clicked images and the student's
// pseudo-labels (and the twin's with `twin_labels`) from `store`, image grids with `image_channels`
// channels (StoredGrid). Images stored at another grid resolution than `resolution` are skipped (a
// different model's images); a label marked for evaluation is never read; a pseudo-label that does
// not parse is skipped with a warning (the next round draws it again), as are a served mask that
// does not parse or fit (the next one replaces it) and a stored click that does not parse (the
// image's other clicks are kept). An image whose records cannot be used (its record, a label or its
// grid corrupt, a grid not finite: kDataLoss; a click, mask or grid channel count the model cannot
// use: kInvalidArgument) is left out with a warning naming it and counted in Replay::unreadable, so
// one bad record never stops the rest. Errors: store failures.
Result<Replay> LoadReplay(const Store& store, int64_t resolution, int64_t num_classes,
                          int64_t image_channels, bool twin_labels = false);

// The replay kept between reads, so that the trainer's frequent reloads cost what changed, not
// what is stored: the first Refresh reads every image (as LoadReplay), later ones read again only
// the images touched since (whoever writes an image's record, clicks, labels, pseudo-labels or a
// clicked image's final mask touches its key after the write). The replay it returns equals
// LoadReplay's on the same store as long as every write was touched and the images fit the budget.
//
// Memory: with `budget_bytes` > 0 the images' tensors held stay within it (1M stored images must
// not need 1M grids in memory). The rest wait, their keys and click and label counts alone in
// memory: each Refresh reads back the next eighth as many as it holds (8 at least; in key order,
// wrapping around) and lets go of those held longest (of those read by one Refresh, the touched
// last), so every image takes its turn and stays about eight Refreshes; a touched image is read at
// once, checking the budget every 16 read. Everything within the budget, the replay is the whole
// store.
class ReplayCache {
 public:
  ReplayCache(int64_t resolution, int64_t num_classes, int64_t image_channels,
              uint64_t budget_bytes = 0);

  // Thread-safe. The image's records changed: the next Refresh reads them again.
  void Touch(const std::string& image_key);
  // Thread-safe. Only the image's served mask changed: the next Refresh reads that record again.
  void TouchMask(const std::string& image_key);
  // Thread-safe. The next Refresh reads the whole store.
  void Invalidate();

  // Reads what was touched (everything the first time, after Invalidate, on a change of
  // `twin_labels`, or after a failed Refresh) and returns the whole replay, images in key order.
  // Not thread-safe against itself. Errors: those of LoadReplay.
  Result<Replay> Refresh(const Store& store, bool twin_labels = false);

  // Images read by the last Refresh, the bytes of the tensors held, and the most held during the
  // last Refresh (for tests and benchmarks; Refresh's thread only).
  uint64_t last_read() const { return last_read_; }
  uint64_t held_bytes() const { return held_bytes_; }
  uint64_t peak_held_bytes() const { return peak_bytes_; }

 private:
  // One image's part of the replay: a training example, or an unsupervised image.
  struct Entry {
    std::optional<ReplayExample> example;
    std::optional<UnsupervisedImage> unsupervised;
    uint64_t clicks = 0;
    uint64_t labels = 0;
    model::GridMapping mapping;  // where the image sits on the grid
    uint64_t bytes = 0;          // of its tensors (Bytes), while held
    uint64_t held_since = 0;     // the Refresh that read it
    bool touched = false;        // read because it was touched (not at the full read or its turn)
  };
  // An image that waits in the store (over the budget): what the replay's totals need of it.
  struct Waiting {
    uint64_t clicks = 0;
    uint64_t labels = 0;
  };
  static uint64_t Bytes(const std::string& image_key, const Entry& entry);
  // The entry's served example (ReplayExample::served) from the image's stored mask now.
  Status ReadServed(const Store& store, const std::string& image_key, Entry& entry) const;
  Result<std::optional<Entry>> Read(const Store& store, const std::string& image_key,
                                    std::string_view stored_image, bool twin_labels) const;
  Status ReadAll(const Store& store, bool twin_labels);
  Status ReadTouched(const Store& store, bool twin_labels);
  // Reads one image's records again (touched, or its turn): held, or gone from the replay when it
  // no longer belongs there (no image yet, another grid, unreadable).
  Status ReadAgain(const Store& store, const std::string& image_key, bool twin_labels,
                   std::map<std::string, std::string>& unreadable);
  // Holds `entry`, or lets it wait when the budget is spent (the full read's images past it).
  void Hold(const std::string& image_key, Entry entry, bool or_wait);
  void Wait(const std::string& image_key, Waiting waits);  // neither held nor waiting before
  void Forget(const std::string& image_key);               // neither held nor waiting
  // Over the budget: the next waiting images in, those held longest out (LetWait).
  Status TakeTurns(const Store& store, bool twin_labels,
                   std::map<std::string, std::string>& unreadable);
  // Over the budget, those held longest wait until it holds (of those read by one Refresh, the
  // touched last).
  void LetWait();

  int64_t resolution_;
  int64_t num_classes_;
  int64_t image_channels_;
  // Leaves `image_key` out of the replay for `why` (warning once per image and reason).
  void LeaveOut(const std::string& image_key, const Status& why,
                std::map<std::string, std::string>& unreadable) const;

  uint64_t budget_bytes_;                          // 0: no limit
  std::map<std::string, Entry> entries_;           // held, by image key; Refresh only
  std::map<std::string, Waiting> waiting_;         // over the budget, by image key; Refresh only
  std::map<std::string, std::string> unreadable_;  // image key -> why it is left out; Refresh only
  uint64_t held_bytes_ = 0;                        // Entry::bytes of entries_; Refresh only
  uint64_t peak_bytes_ = 0;                        // of held_bytes_ in the last Refresh
  uint64_t waiting_clicks_ = 0, waiting_labels_ = 0;  // of waiting_; Refresh only
  std::string turn_;                 // the last waiting image read back; Refresh only
  uint64_t refreshes_ = 0;           // Refresh only
  bool said_waiting_ = false;        // Refresh only
  std::optional<bool> twin_labels_;  // of the entries; none: read everything next
  uint64_t last_read_ = 0;
  std::mutex mu_;
  std::set<std::string> touched_;       // GUARDED_BY(mu_)
  std::set<std::string> mask_touched_;  // GUARDED_BY(mu_)
  bool full_ = true;                    // GUARDED_BY(mu_)
};

// The pseudo-label record of a teacher's vote: `samples` [N,R,R] class ids; a pixel is confident
// when its majority class has at least `confidence` of the votes.
v1::PseudoLabel MakePseudoLabel(const torch::Tensor& samples, int64_t num_classes,
                                double confidence, uint64_t teacher_version,
                                v1::PseudoLabel::Labeller labeller);

}  // namespace clickdiff
