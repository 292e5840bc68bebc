// The PCI address parser (host/bdf.hpp), used by the kernel backend for `bind_device("0000:01:00.0")` and by
// the simulated host's hardware profiles. Linux names a PCI function "%04x:%02x:%02x.%d" (drivers/pci/probe.c,
// pci_setup_device): its /sys/bus/pci/devices/ directory and `lspci -D`'s output; plain `lspci` prints
// "bus:device.function" without the domain.
#include <gtest/gtest.h>

#include "host/bdf.hpp"

namespace vsmmu::host {
namespace {

TEST(Bdf, AcceptsTheSysfsAndLspciForms) {
  struct Row {
    const char* text;
    std::uint32_t segment;
    unsigned bus, device, function;
    bool has_segment;
  };
  const Row rows[] = {
      {"0000:01:00.0", 0, 0x01, 0x00, 0, true},       // sysfs, lspci -D
      {"0003:05:1f.7", 3, 0x05, 0x1f, 7, true},       // the largest device and function
      {"ABCD:EF:1A.3", 0xabcd, 0xef, 0x1a, 3, true},  // either case
      {"10000:00:02.0", 0x10000, 0, 0x02, 0, true},   // a VMD domain: sysfs's %04x grows past four digits
      {"01:00.0", 0, 0x01, 0x00, 0, false},           // lspci without -D
      {"ff:1f.7", 0, 0xff, 0x1f, 7, false},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.text);
    auto p = parse_bdf(r.text);
    ASSERT_TRUE(p) << p.error();
    EXPECT_EQ(p->bdf.segment, r.segment);
    EXPECT_EQ(p->bdf.bus, r.bus);
    EXPECT_EQ(p->bdf.device, r.device);
    EXPECT_EQ(p->bdf.function, r.function);
    EXPECT_EQ(p->has_segment, r.has_segment);
  }
}

TEST(Bdf, RefusesEverythingElse) {
  for (const char* text : {
           "",               // nothing
           "eth0",           // a name
           "1:2:3",          // no function
           "1:00.0",         // a one-digit bus
           "01:0.0",         // a one-digit device
           "0:01:00.0",      // a segment of fewer than four digits
           "000000000:01:00.0",  // more than eight
           "0000:01:000.0",  // a three-digit device
           "0000:01:20.0",   // device above 1f
           "0000:01:00.8",   // function above 7
           "0000:01:00.10",  // two-digit function
           " 0000:01:00.0",  // blanks
           "0000:01:00.0 ",
           "0000:+1:00.0",   // a sign
           "0x00:01:00.0",   // a prefix
           "0000:01:00.0.1",
           "0000:01-00.0",
           "0000:0g:00.0",   // not hexadecimal
       }) {
    auto p = parse_bdf(text);
    ASSERT_FALSE(p) << '"' << text << '"';
    EXPECT_EQ(p.error().err, EINVAL);
    EXPECT_NE(p.error().message.find("is not a PCI address; allowed: \"SSSS:BB:DD.F\" or \"BB:DD.F\""),
              std::string::npos)
        << p.error().message;
  }
}

// The requester ID (bus[15:8], device[7:3], function[2:0]) and the name printed back in sysfs's form.
TEST(Bdf, RidAndSysfsName) {
  auto p = parse_bdf("05:1F.7");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->bdf.rid(), 0x5ffU);
  EXPECT_EQ(p->bdf.to_string(), "0000:05:1f.7");
  p = parse_bdf("10000:00:02.1");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->bdf.to_string(), "10000:00:02.1");
  EXPECT_EQ(p->bdf.rid(), 0x11U);
}

}  // namespace
}  // namespace vsmmu::host
