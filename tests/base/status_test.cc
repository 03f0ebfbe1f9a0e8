#include "base/status.h"

#include <gtest/gtest.h>

namespace clickdiff {
namespace {

Status FailsWhen(bool fail) { return fail ? InvalidArgument("x: bad") : Status::Ok(); }

Status Chain(bool fail, int* reached) {
  CLICKDIFF_RETURN_IF_ERROR(FailsWhen(fail));
  *reached = 1;
  return Status::Ok();
}

TEST(StatusTest, OkAndErrorsPrintTheirCode) {
  EXPECT_TRUE(Status::Ok().ok());
  EXPECT_EQ(Status::Ok().ToString(), "OK");
  Status s = NotFound("model.pt: no such file");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.ToString(), "not_found: model.pt: no such file");
  EXPECT_EQ(s.WithContext("load").message(), "load: model.pt: no such file");
  EXPECT_TRUE(Status::Ok().WithContext("load").ok());
}

TEST(StatusTest, ReturnIfErrorStopsAtTheFirstError) {
  int reached = 0;
  EXPECT_FALSE(Chain(true, &reached).ok());
  EXPECT_EQ(reached, 0);
  EXPECT_TRUE(Chain(false, &reached).ok());
  EXPECT_EQ(reached, 1);
}

TEST(ResultTest, HoldsAValueOrAnError) {
  Result<int> good = 7;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 7);
  Result<int> bad = DataLoss("truncated");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss);
  Result<int> wrong = Status::Ok();  // a programming error, reported rather than hidden
  EXPECT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace clickdiff
