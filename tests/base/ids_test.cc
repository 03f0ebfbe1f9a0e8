#include "base/ids.h"

#include <gtest/gtest.h>

#include <string>

namespace clickdiff {
namespace {

TEST(IdsTest, FileNamesClickIdsAndUtf8AreIds) {
  for (const char* id : {"patient081_frame01_slice_0.png", "synthetic_0000.png", "a.png#s1#3",
                         "img@3,4:1-", "case 12 (left) [v2]", "x+y=z~", "M\xc3\xbcller.png"}) {
    EXPECT_EQ(IdProblem("image_id", id), "") << id;
  }
}

TEST(IdsTest, PathsParentsAndControlCharactersAreNotIds) {
  struct Case {
    std::string id;
    std::string problem;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"", "image_id: empty (required)"},
           {"..", "image_id: \"..\" is not a valid id"},
           {".", "image_id: \".\" is not a valid id"},
           {"../../etc/passwd", "image_id: contains '/'"},
           {"/abs", "image_id: contains '/'"},
           {"a\\b", "image_id: contains '\\'"},
           {std::string("a\0b", 3), "image_id: contains 0x00"},
           {"tab\there", "image_id: contains 0x09"},
           {"$(rm -rf)", "image_id: contains '$'"},
           {"semi;colon", "image_id: contains ';'"},
       }) {
    const std::string problem = IdProblem("image_id", c.id);
    EXPECT_EQ(problem.substr(0, c.problem.size()), c.problem) << c.id << ": " << problem;
  }
  EXPECT_EQ(IdProblem("click_id", std::string(kMaxIdBytes, 'a')), "");
  EXPECT_EQ(IdProblem("click_id", std::string(kMaxIdBytes + 1, 'a')),
            "click_id: 201 bytes, more than the limit of 200");
}

}  // namespace
}  // namespace clickdiff
