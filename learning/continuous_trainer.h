// learning/continuous_trainer.h — trains the model on its own thread while the graph serves, and
// hands each new version to the samplers.
//
// The loop: read the supervision stored in RocksDB (learning/replay.h; after the first read, only
// the images touched since), train in short runs, and every `snapshot_every_steps` steps or
// `snapshot_seconds` seconds (whichever first) make a version: the teacher's model (or the
// student's) is written with the VersionStore, announced on the model-updates topic, set in the
// ModelSlot fully built (samplers pick it up between requests), `on_version` runs, and the
// teacher's pseudo-labelling round follows. Examples whose supervision changed since the previous
// version weigh `recent_weight` times as much, so a new click shows in the next version. The
// training copy of the model is never the one served.
//
// Gate (learning/version_gate.h): a share of the supervised images is held out of training, and a
// snapshot whose held-out loss is worse than the lowest a published version had on the same images
// (beyond the tolerance) is not published: the served version stays, the student and its average
// start again from it, and half the refused run's steps are added to the step budget (while that
// is at least `run_steps`), so the new clicks get a shorter try instead of waiting for more clicks.
//
// Budget: training stops after `steps_per_click` steps per click or training label (all versions
// of the lineage counted) and resumes when supervision grows; the last steps become a version
// first. Failures are retried with a backoff of 1 s doubling to 60 s while the last version keeps
// being served.
//
// Thread-safety: Start, Stop, Touch, TouchMask, counters and failure may be called from any thread;
// the rest runs on the trainer's own thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "io/kafka_producer.h"
#include "io/outbox.h"
#include "io/store.h"
#include "learning/model_slot.h"
#include "learning/replay.h"
#include "learning/teacher.h"
#include "learning/version_gate.h"
#include "learning/version_store.h"
#include "model/segmenter.h"
#include "model/trainer.h"

namespace clickdiff {

struct ContinuousTrainerOptions {
  TrainerConfig trainer;  // batch, learning rate, seed, snapshots, step budget, recent weight
  TeacherConfig teacher;
  int64_t teacher_memory_budget_mb = 512;  // sampler.memory_budget_mb
  int64_t run_steps = 10;                  // steps between checks for Stop and new supervision
  int64_t start_steps = 0;                 // steps the start version had already been trained
  // The start model is a fresh initialisation (no checkpoint, no stored version): a twin then gets
  // its own initialisation too; otherwise it starts as a copy of the start (or its stored self).
  bool start_untrained = false;
  // Devices each version is served on: the first must be the training device (the version
  // itself), each further one gets a replica (ServingModel). Empty: the training device alone.
  std::vector<torch::Device> serving_devices;
  std::string updates_topic;  // empty: no ModelUpdate is produced
};

// The collaborators; none is owned and all must outlive the trainer. `producer` may be null.
struct ContinuousTrainerDeps {
  Store* store = nullptr;
  VersionStore* versions = nullptr;
  ModelSlot* slot = nullptr;
  KafkaProducer* producer = nullptr;
};

struct TrainerCounters {
  uint64_t version = 0;  // last version made (or loaded)
  int64_t steps = 0;     // training steps of the lineage (the start version's included)
  bool waiting = false;  // the step budget is spent: waiting for more supervision
  uint64_t passes = 0;   // passes of the loop done (each trains a run, or finds nothing to do)
  float loss = 0;        // mean loss of the last run
  uint64_t examples = 0;
  uint64_t clicks = 0;
  uint64_t labels = 0;
  uint64_t pseudo_labels = 0;  // unsupervised images with a pseudo-label in the student's replay
  uint64_t held_out = 0;       // supervised images held out of training to judge versions
  uint64_t refused = 0;        // snapshots the gate did not publish
  // Training steps skipped since start because their loss or gradients were not finite
  // (model::Segmenter::TrainStep), and snapshots withheld because their weights were not.
  int64_t skipped_steps = 0;
  uint64_t withheld = 0;
  uint64_t unreadable = 0;  // stored images left out of the replay (Replay::unreadable)
};

class ContinuousTrainer {
 public:
  // `start` is a training copy of the served model `start_version`. Starts nothing.
  ContinuousTrainer(ContinuousTrainerDeps deps, model::Segmenter start, uint64_t start_version,
                    ContinuousTrainerOptions options,
                    std::function<void(uint64_t version)> on_version);
  ~ContinuousTrainer();  // Stop()
  ContinuousTrainer(const ContinuousTrainer&) = delete;
  ContinuousTrainer& operator=(const ContinuousTrainer&) = delete;

  // Starts the trainer's thread. Errors: kFailedPrecondition when started twice or a
  // collaborator is missing.
  Status Start();
  // Finishes the run in hand (at most run_steps steps) and joins. Idempotent.
  void Stop();
  // Cheap. The records of `image_key` (its image, clicks or labels) were written: the next reload
  // (at most every 2 s) reads them again. Reloads read only what was touched (every image the
  // first time and after a failure), so whoever writes supervision must touch it (the teacher's
  // rounds touch what they label).
  void Touch(const std::string& image_key);
  // Cheap. A clicked image got a new served mask (teacher.clicked_masks): the next reload reads
  // that record again.
  void TouchMask(const std::string& image_key);
  TrainerCounters counters() const;
  // OK, or the error of the last attempt when it failed.
  Status failure() const;
  // After Stop and the producer's last flush: deletes the announcements the broker acknowledged
  // meanwhile (Outbox::Settle), so a restart does not send them again.
  Status SettleOutbox();

 private:
  void Run();
  Status TrainOnce();
  Status Reload();
  Status Round();
  // Publishes a version, or returns false when the gate refused the snapshot or its weights are
  // not finite.
  Result<bool> Snapshot();
  // The gate refused a snapshot: the student and its average start again from the served weights.
  void Refuse(const GateVerdict& verdict);
  // The snapshot's weights are not finite: nothing is saved, the student and its average start
  // again from the served version. Errors: kInternal when no version is served.
  Status Withhold();
  // The student and its average take `weights`, and the next snapshot counts from here.
  void RestartFrom(const model::Segmenter& weights);
  // Pumps the model-updates outbox (a failure is logged; the records stay stored).
  void SendAnnouncements();
  // Waits up to a second, or until Stop.
  void Idle();
  int64_t TotalSteps() const { return options_.start_steps + trainer_.steps_done(); }
  bool stopping() const;

  ContinuousTrainerDeps deps_;
  model::Segmenter segmenter_;  // the student
  model::Trainer trainer_;      // holds &segmenter_
  ContinuousTrainerOptions options_;
  std::function<void(uint64_t)> on_version_;
  Teacher teacher_;   // trainer thread only
  VersionGate gate_;  // trainer thread only
  // A copy of the served version to judge snapshots against (built by Start when the gate can
  // hold images out). Trainer thread only.
  std::optional<model::Segmenter> served_copy_;
  std::unique_ptr<Outbox> outbox_;  // model-updates announcements; trainer thread only
  int64_t trained_examples_ = 0;  // replay examples trained on (not held out); trainer thread only
  uint64_t refused_since_ = 0;    // snapshots refused since the last version; trainer thread only
  int64_t retry_credit_ = 0;      // steps added to the budget by refusals; trainer thread only

  // Each supervised image's revision at the last snapshot it was held for (a key and a number for
  // every one: those waiting over the replay's budget keep theirs). Trainer thread only.
  std::map<std::string, uint64_t> snapshotted_revisions_;
  ReplayCache replay_cache_;                  // Touch*: any thread; Refresh: trainer thread only
  Replay replay_;                             // trainer thread only
  std::vector<model::TrainingExample> data_;  // trainer thread only: weighted replay
  std::vector<model::TrainingExample> twin_data_;  // trainer thread only: the twin's
  std::optional<std::chrono::steady_clock::time_point> replay_time_;  // trainer thread only
  int64_t steps_at_snapshot_ = 0;                                     // trainer thread only
  std::chrono::steady_clock::time_point snapshot_time_;               // trainer thread only

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;     // GUARDED_BY(mu_)
  TrainerCounters counters_;  // GUARDED_BY(mu_)
  Status failure_;            // GUARDED_BY(mu_)
  std::thread thread_;        // started by Start
};

}  // namespace clickdiff
