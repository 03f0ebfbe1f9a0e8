#include "nodes/dead_letter.h"

#include <spdlog/spdlog.h>

namespace clickdiff {

DeadLetterSink::DeadLetterSink(Outbox* outbox, Store* store, std::string dlq_suffix)
    : outbox_(outbox), store_(store), dlq_suffix_(std::move(dlq_suffix)) {}

void DeadLetterSink::Add(Store::Batch& batch, const KafkaMessage& source,
                         const std::string& reason) {
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
  letter.set_key(source.key.substr(0, kMaxLetterPayload));
  letter.set_timestamp_ms(NowMs());
  const std::string dlq = source.topic + dlq_suffix_;
  spdlog::warn("dead letter {}[{}]@{} -> {}: {}", source.topic, source.partition, source.offset,
               dlq, reason);
  outbox_->Put(batch, dlq, source.key.substr(0, kMaxLetterKey), letter.SerializeAsString());
  count_.fetch_add(1);
}

void DeadLetterSink::Add(Store::Batch& batch, const v1::PendingEvent& parked,
                         const std::string& reason) {
  KafkaMessage source;
  source.topic = parked.source_topic();
  source.partition = parked.source_partition();
  source.offset = parked.source_offset();
  source.key = parked.has_label() ? parked.label().label_id() : parked.click().click_id();
  source.value =
      parked.has_label() ? parked.label().SerializeAsString() : parked.click().SerializeAsString();
  Add(batch, source, reason);
}

Status DeadLetterSink::operator()(const KafkaMessage& source, const std::string& reason) {
  Store::Batch batch;
  Add(batch, source, reason);
  AdvanceOffset(batch, source);
  return store_->Write(batch);
}

}  // namespace clickdiff
