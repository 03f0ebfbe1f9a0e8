#include "nodes/dead_letter.h"

#include <spdlog/spdlog.h>

namespace clickdiff {

DeadLetterSink::DeadLetterSink(KafkaProducer* producer, Store* store, std::string dlq_suffix)
    : producer_(producer), store_(store), dlq_suffix_(std::move(dlq_suffix)) {}

Status DeadLetterSink::operator()(const KafkaMessage& source, const std::string& reason,
                                  bool advance_offset) {
  v1::DeadLetter letter;
  letter.set_source_topic(source.topic);
  letter.set_source_partition(source.partition);
  letter.set_source_offset(source.offset);
  letter.set_reason(reason);
  letter.set_payload(source.value);
  letter.set_key(source.key);
  letter.set_timestamp_ms(NowMs());
  const std::string dlq = source.topic + dlq_suffix_;
  spdlog::warn("dead letter {}[{}]@{} -> {}: {}", source.topic, source.partition, source.offset,
               dlq, reason);
  count_.fetch_add(1);
  Status produced = producer_->Produce(dlq, source.key, letter.SerializeAsString());
  if (!produced.ok()) spdlog::error("dead letter not queued to {}: {}", dlq, produced.message());
  if (!advance_offset) return produced;
  Store::Batch batch;
  AdvanceOffset(batch, source);
  return store_->Write(batch);
}

Status DeadLetterSink::operator()(const v1::PendingClick& parked, const std::string& reason) {
  KafkaMessage source;
  source.topic = parked.source_topic();
  source.partition = parked.source_partition();
  source.offset = parked.source_offset();
  source.key = parked.click().click_id();
  source.value = parked.click().SerializeAsString();
  return (*this)(source, reason, /*advance_offset=*/false);
}

}  // namespace clickdiff
