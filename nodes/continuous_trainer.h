// nodes/continuous_trainer.h — trains the model in its own thread while the graph serves, and
// hands each new version to the samplers.
//
// Loop: replay the supervision stored in RocksDB (nodes/replay.h; after the first read, only the
// images touched since are read again), train in short runs, and every
// `snapshot_every_steps` steps or `snapshot_seconds` seconds (whichever first) snapshot a version:
// its checkpoint and "current version" go to RocksDB in one batch, a ModelUpdate to the
// model-updates topic, a fully built copy into the ModelSlot (samplers pick it up between requests;
// a request keeps the version it started with), then `on_version` runs. Examples whose supervision
// changed since the previous snapshot weigh `recent_weight` times as much, so a new click shows in
// the next version. The training copy of the model is never the one served.
//
// Budget: training stops after `steps_per_click` steps per click or training label (all versions
// of the lineage counted) and resumes when supervision grows, a corrective click on an image that
// already had clicks included; the last steps become a version first.
// Teacher-student (TeacherOptions): an exponential moving average of the student, updated after
// every run, is what gets served. Right after each snapshot the teacher pseudo-labels unsupervised
// images; they join the replay with a weight ramped up with the lineage's steps. Mode kEma: the
// average is the teacher. Mode kTwin (paper 004's co-training): a twin (initialised on its own
// when the student starts from scratch, else a copy of the start with training noise of its own)
// trains on the same supervision in step with the student; the twin labels for the student and
// the student for the twin (cross pseudo-supervision). The current version's twin is stored with
// it (kTwinKey, kTwinVersionKey) and resumed when the service restarts from that version.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "io/kafka_producer.h"
#include "io/store.h"
#include "model/segmenter.h"
#include "model/trainer.h"
#include "nodes/model_slot.h"
#include "nodes/replay.h"

namespace clickdiff {

enum class TeacherMode { kEma, kTwin };

// Teacher-student (config/config.h TeacherConfig).
struct TeacherOptions {
  bool enabled = false;
  TeacherMode mode = TeacherMode::kEma;
  double ema_decay = 0.99;
  int64_t samples = 8;
  int64_t steps = 20;
  double confidence = 0.9;
  double weight = 1.0;
  int64_t ramp_steps = 500;
  int64_t images_per_round = 16;
  int64_t memory_budget_mb = 512;
};

struct ContinuousTrainerOptions {
  model::TrainerOptions trainer;  // batch size, learning rate, seed (budgets are set here)
  int64_t snapshot_every_steps = 200;
  double snapshot_seconds = 60;
  double recent_weight = 4;     // >= 1
  int64_t run_steps = 10;       // steps between checks for stop and new supervision
  uint64_t keep_versions = 10;  // versions kept in the store (older deleted); 0: all
  // Training steps allowed per click or training label stored, over the whole lineage; once spent
  // the trainer waits for more supervision. 0: no limit.
  int64_t steps_per_click = 0;
  int64_t start_steps = 0;  // steps the start version had already been trained
  // The start model is a fresh initialisation (no checkpoint, no stored version): a twin then gets
  // its own initialisation too; otherwise it starts as a copy of the start (or its stored self).
  bool start_untrained = false;
  // Devices each version is served on: the first must be the training device (the version
  // itself), each further one gets a replica (ServingModel). Empty: the training device alone.
  std::vector<torch::Device> serving_devices;
  TeacherOptions teacher;
  std::string updates_topic;  // empty: no ModelUpdate is produced
  // Names where the versions come from (method, starting checkpoint, classes, grid); stored with
  // each version so that a service restarted with another model does not resume this lineage.
  std::string lineage;
};

// What the store holds for a restart (ContinuousTrainer::LoadLatest).
struct StoredVersions {
  std::optional<ServingModel> model;  // the newest version, when it is of the asked lineage
  int64_t steps = 0;                  // training steps behind it (0 when unknown)
  uint64_t newest = 0;                // the newest version number stored, of any lineage
};

struct TrainerCounters {
  uint64_t version = 0;  // last version snapshotted (or loaded)
  int64_t steps = 0;     // training steps of the lineage (the start version's included)
  bool waiting = false;  // the step budget is spent: waiting for more supervision
  float loss = 0;        // mean loss of the last run
  uint64_t examples = 0;
  uint64_t clicks = 0;
  uint64_t labels = 0;
  uint64_t pseudo_labels = 0;  // unsupervised images with a pseudo-label in the student's replay
};

class ContinuousTrainer {
 public:
  // Starts the thread. `start` is a training copy of the served model `start_version`; store,
  // slot and producer (may be null) are not owned and must outlive the trainer.
  ContinuousTrainer(Store* store, ModelSlot* slot, KafkaProducer* producer, model::Segmenter start,
                    uint64_t start_version, ContinuousTrainerOptions options,
                    std::function<void(uint64_t version)> on_version);
  ~ContinuousTrainer();  // Stop()
  ContinuousTrainer(const ContinuousTrainer&) = delete;
  ContinuousTrainer& operator=(const ContinuousTrainer&) = delete;

  // Finishes the run in hand (at most run_steps steps) and joins. Idempotent.
  void Stop();
  // Thread-safe, cheap. The records of `image_key` (its image, clicks or labels) were written:
  // the trainer reads them again at its next reload. Reloads read only what was touched (every
  // image the first time and after a failure), so whoever writes supervision must touch it (the
  // trainer touches the images its teacher rounds pseudo-label itself).
  void Touch(const std::string& image_key) { replay_cache_.Touch(image_key); }
  TrainerCounters counters() const;
  // OK, or the error of the last attempt when it failed (training is retried with a backoff of
  // 1 s doubling to 60 s; the service keeps serving the last version meanwhile).
  Status failure() const;

  // The RocksDB key of a version's checkpoint (kModels) and of the current version (kMetadata).
  static std::string ModelKey(uint64_t version);
  static const char* const kCurrentVersionKey;
  static const char* const kLineageKey;
  // The kModels key of the co-trained twin (teacher mode kTwin), and the kMetadata key of the
  // version it was stored with.
  static const char* const kTwinKey;
  static const char* const kTwinVersionKey;
  // The newest version stored, built on `device` when it is of `lineage`. Errors: store failures,
  // a current version whose checkpoint is missing or unreadable (kDataLoss).
  static Result<StoredVersions> LoadLatest(const Store& store, torch::Device device,
                                           const std::string& lineage);

 private:
  void Run();
  Status TrainOnce();
  Status Reload();
  Status Round();
  Status Snapshot();
  Status StartTeacher();
  Result<model::Segmenter> StartTwin() const;
  Status PseudoLabel(uint64_t version, const model::Segmenter& labeller, Learner learner);
  void UpdateAverage(int64_t steps);
  int64_t TotalSteps() const { return options_.start_steps + trainer_.steps_done(); }
  bool stopping() const;

  Store* store_;
  ModelSlot* slot_;
  KafkaProducer* producer_;
  model::Segmenter segmenter_;
  // Trainer thread only. The EMA of segmenter_ when the teacher is enabled; in mode kTwin the twin
  // and its trainer, which holds &*twin_ (and its optimizer the twin's parameters): twin_ is set
  // once and never reassigned, and is declared before twin_trainer_ so it outlives it.
  std::optional<model::Segmenter> average_;
  std::optional<model::Segmenter> twin_;
  std::unique_ptr<model::Trainer> twin_trainer_;
  model::Trainer trainer_;
  ContinuousTrainerOptions options_;
  std::function<void(uint64_t)> on_version_;

  std::map<std::string, uint64_t> snapshotted_revisions_;  // trainer thread only
  ReplayCache replay_cache_;                  // Touch: any thread; Refresh: trainer thread only
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
  std::thread thread_;
};

}  // namespace clickdiff
