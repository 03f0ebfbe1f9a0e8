#include "nodes/dead_letter.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

namespace clickdiff {

DeadLetterSink::DeadLetterSink(KafkaProducer* producer, Store* store, std::string dlq_suffix)
    : producer_(producer), store_(store), dlq_suffix_(std::move(dlq_suffix)) {}

Status DeadLetterSink::operator()(const KafkaMessage& source, const std::string& reason,
                                  bool advance_offset) {
  v1::DeadLetter letter;
  letter.set_source_topic(source.topic);
  letter.set_source_partition(source.partition);
  letter.set_source_offset(source.offset);
  // A refused record may be far larger than a Kafka message may be (an oversized image): keep its
  // head, and say so.
  if (source.value.size() > kMaxLetterPayload) {
    letter.set_reason(reason + " (dead letter keeps the first " +
                      std::to_string(kMaxLetterPayload) + " of " +
                      std::to_string(source.value.size()) + " bytes)");
    letter.set_payload(source.value.substr(0, kMaxLetterPayload));
  } else {
    letter.set_reason(reason);
    letter.set_payload(source.value);
  }
  letter.set_key(source.key);
  letter.set_timestamp_ms(NowMs());
  const std::string dlq = source.topic + dlq_suffix_;
  spdlog::warn("dead letter {}[{}]@{} -> {}: {}", source.topic, source.partition, source.offset,
               dlq, reason);
  const std::string bytes = letter.SerializeAsString();
  Status produced = producer_->Produce(dlq, source.key, bytes);
  // A full queue drains as the producer's thread delivers: wait for room, up to a limit.
  for (int i = 0; i < 100 && produced.code() == StatusCode::kResourceExhausted; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    produced = producer_->Produce(dlq, source.key, bytes);
  }
  if (!produced.ok()) {
    // The offset stays where it is: the event is read (and refused) again after a restart.
    return produced.WithContext("dead letter to " + dlq);
  }
  count_.fetch_add(1);
  if (!advance_offset) return Status::Ok();
  Store::Batch batch;
  AdvanceOffset(batch, source);
  return store_->Write(batch);
}

Status DeadLetterSink::operator()(const v1::PendingEvent& parked, const std::string& reason) {
  KafkaMessage source;
  source.topic = parked.source_topic();
  source.partition = parked.source_partition();
  source.offset = parked.source_offset();
  source.key = parked.has_label() ? parked.label().label_id() : parked.click().click_id();
  source.value =
      parked.has_label() ? parked.label().SerializeAsString() : parked.click().SerializeAsString();
  return (*this)(source, reason, /*advance_offset=*/false);
}

}  // namespace clickdiff
