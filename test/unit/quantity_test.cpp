#include <gtest/gtest.h>

#include "colo/common/quantity.h"

namespace colo::quantity {
namespace {

TEST(Quantity, ParsesKubernetesByteQuantities) {
  EXPECT_EQ(*parseBytes("64Mi"), 64ULL << 20);
  EXPECT_EQ(*parseBytes("1Gi"), 1ULL << 30);
  EXPECT_EQ(*parseBytes("2Ti"), 2ULL << 40);
  EXPECT_EQ(*parseBytes("512Ki"), 512ULL << 10);
  EXPECT_EQ(*parseBytes("1048576"), 1048576ULL);
  EXPECT_EQ(*parseBytes("5M"), 5000000ULL);
  EXPECT_EQ(*parseBytes("3k"), 3000ULL);
  EXPECT_EQ(*parseBytes("0"), 0ULL);
}

TEST(Quantity, RefusesMalformedInputByName) {
  for (const char* bad : {"", "Mi", "-1Mi", "1.5Gi", "64mi", "64 Mi", "64MiB", "1e3", "lots", "99999999999999999999", "18446744073709551615Ki"}) {
    auto r = parseBytes(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find(std::string("'") + bad + "'"), std::string::npos) << r.error().message;
  }
}

TEST(Quantity, Formats) {
  EXPECT_EQ(formatBytes(64ULL << 20), "64Mi");
  EXPECT_EQ(formatBytes(3ULL << 30), "3Gi");
  EXPECT_EQ(formatBytes(1000), "1000");
  EXPECT_EQ(formatBytes(0), "0");
}

}  // namespace
}  // namespace colo::quantity
