// Errors as an operator reads them (base/error.hpp) and their propagation (base/try.hpp).
#include <gtest/gtest.h>

#include <string>

#include "base/error.hpp"
#include "base/try.hpp"

namespace vsmmu {
namespace {

Result<int> parse_digit(char c) {
  if (c < '0' || c > '9') return fail(EINVAL, "parse", "'{}' is not a digit", c);
  return c - '0';
}

Result<int> sum_of(const std::string& s) {
  int sum = 0;
  for (char c : s) {
    VSMMU_TRY_ASSIGN(const int d, parse_digit(c));
    sum += d;
  }
  return sum;
}

Result<void> check_all(const std::string& s) {
  VSMMU_TRY(sum_of(s));
  return {};
}

Result<int> open_table(const std::string& s) {
  auto r = sum_of(s);
  if (!r) return fail(r.error(), "table", "reading table \"{}\"", s);
  return *r;
}

TEST(Error, PrintsWhereMessageAndErrnoOnce) {
  const Error e{ENOENT, "IOMMU_HWPT_ALLOC", "no such object"};
  EXPECT_EQ(e.to_string(), "IOMMU_HWPT_ALLOC: no such object (ENOENT, errno 2)");
}

TEST(Error, ContextKeepsTheInnerWhereAndTheErrnoAndPrintsTheErrnoOnce) {
  const Error inner{EBUSY, "IOMMU_VIOMMU_ALLOC", "the device is busy"};
  const Error outer = inner.context("vsmmu", "vsmmu0 device nic0: cannot nest");
  EXPECT_EQ(outer.err, EBUSY);
  EXPECT_EQ(outer.where, "vsmmu");
  EXPECT_EQ(outer.to_string(),
            "vsmmu: vsmmu0 device nic0: cannot nest: IOMMU_VIOMMU_ALLOC: the device is busy (EBUSY, errno 16)");
}

TEST(Try, PassesValuesThroughAndTheFirstFailureUp) {
  ASSERT_TRUE(sum_of("123"));
  EXPECT_EQ(*sum_of("123"), 6);
  auto bad = sum_of("1x3");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().where, "parse");
  EXPECT_EQ(bad.error().message, "'x' is not a digit");
  EXPECT_TRUE(check_all("42"));
  EXPECT_EQ(check_all("4-").error().err, EINVAL);
}

TEST(Try, FailWithAnInnerErrorAddsThisLayersContext) {
  auto r = open_table("9z");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().to_string(), "table: reading table \"9z\": parse: 'z' is not a digit (EINVAL, errno 22)");
}

}  // namespace
}  // namespace vsmmu
