// Kernel and hardware profiles (docs/sim-host.md): the embedded ones are the shipped files; every unknown key
// or bad value is an error naming the file, the key and what is allowed; named settings land in the ID
// registers the simulated SMMU reports (IHI 0070 6.3.1-6.3.7 field positions via smmu/registers.hpp).
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/sim/host/sim_fixture.hpp"

namespace vsmmu::host::sim::test {
namespace {

namespace fs = std::filesystem;

// The message of a profile that fails to parse; empty if it parsed.
std::string hw_error(const std::string& json) {
  auto r = parse_hardware_profile(json, "test.json");
  if (r) return {};
  EXPECT_EQ(r.error().err, EINVAL);
  return r.error().message;
}

std::string hw_with_smmu(const std::string& smmu_fields) {
  return fmt::format(R"({{"kind": "hardware", "name": "t", "smmus": [{{"name": "s0"{}}}],
    "root_complexes": [{{"name": "rc0", "smmu": "s0"}}],
    "devices": [{{"name": "d0", "bdf": "00:01.0", "root_complex": "rc0"}}]}})", smmu_fields);
}

void expect_mentions(const std::string& msg, std::initializer_list<const char*> words) {
  EXPECT_FALSE(msg.empty()) << "expected an error";
  for (const char* w : words) EXPECT_NE(msg.find(w), std::string::npos) << "\"" << w << "\" missing in: " << msg;
}

TEST(SimProfiles, EmbeddedProfilesAreTheShippedFiles) {
  const fs::path dir = fs::path(VSMMU_SOURCE_DIR) / "host/sim/profiles";
  std::size_t files = 0;
  for (const auto& kind : {"kernel", "hardware"}) {
    for (const auto& entry : fs::directory_iterator(dir / kind)) {
      ++files;
      const auto name = entry.path().stem().string();
      if (std::string_view(kind) == "kernel") {
        auto from_file = load_kernel_profile(entry.path().string());
        ASSERT_TRUE(from_file) << from_file.error();
        auto embedded = embedded_kernel_profile(name);
        ASSERT_TRUE(embedded) << embedded.error();
        EXPECT_EQ(from_file->name, embedded->name);
        EXPECT_EQ(from_file->nest_parent_dirty_tracking, embedded->nest_parent_dirty_tracking);
        EXPECT_EQ(from_file->source, entry.path().string());
      } else {
        auto from_file = load_hardware_profile(entry.path().string());
        ASSERT_TRUE(from_file) << from_file.error();
        auto embedded = embedded_hardware_profile(name);
        ASSERT_TRUE(embedded) << embedded.error();
        ASSERT_EQ(from_file->smmus.size(), embedded->smmus.size());
        EXPECT_EQ(from_file->smmus[0].config.idr0.value(), embedded->smmus[0].config.idr0.value());
        EXPECT_EQ(from_file->devices.size(), embedded->devices.size());
        // And a simulated host comes up on each.
        auto host = SimHost::create(must(embedded_kernel_profile("upstream")), std::move(*from_file));
        EXPECT_TRUE(host) << name << ": " << host.error();
      }
    }
  }
  EXPECT_EQ(files, embedded_kernel_profile_names().size() + embedded_hardware_profile_names().size());
  for (const char* k : {"upstream", "nested-dirty", "strict-invalidation"})
    EXPECT_TRUE(embedded_kernel_profile(k)) << k;
  EXPECT_TRUE(embedded_hardware_profile("default"));
}

TEST(SimProfiles, ResolveByNameOrPath) {
  EXPECT_EQ(must(resolve_kernel_profile("nested-dirty")).name, "nested-dirty");
  const auto path = std::string(VSMMU_SOURCE_DIR) + "/host/sim/profiles/hardware/minimal.json";
  EXPECT_EQ(must(resolve_hardware_profile(path)).name, "minimal");
  auto missing = resolve_hardware_profile("/nonexistent/hw.json");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().err, ENOENT);
  expect_mentions(missing.error().message, {"/nonexistent/hw.json"});
  auto unknown = resolve_kernel_profile("linux-2.4");
  ASSERT_FALSE(unknown);
  expect_mentions(unknown.error().message, {"linux-2.4", "upstream", "nested-dirty"});
}

// Strictness: every unknown key and bad value names the file, the key's path and what is allowed.
TEST(SimProfiles, ErrorsNameFileKeyAndAllowedValues) {
  {
    std::string with_colour = hw_with_smmu("");
    with_colour.insert(1, R"("colour": 1, )");
    expect_mentions(hw_error(with_colour), {"test.json", "colour", "unknown key", "\"smmus\""});
  }
  expect_mentions(hw_error(hw_with_smmu(R"(, "bogus": true)")), {"test.json", "smmus[0].bogus", "unknown key", "\"httu\""});
  expect_mentions(hw_error(hw_with_smmu(R"(, "httu": "full")")), {"smmus[0].httu", "\"none\", \"access\", \"dirty\""});
  expect_mentions(hw_error(hw_with_smmu(R"(, "oas_bits": 45)")), {"smmus[0].oas_bits", "allowed: 32, 36, 40"});
  expect_mentions(hw_error(hw_with_smmu(R"(, "sid_bits": 40)")), {"smmus[0].sid_bits", "[1, 32]"});
  expect_mentions(hw_error(hw_with_smmu(R"(, "s2fwb": "yes")")), {"smmus[0].s2fwb", "true, false"});
  expect_mentions(hw_error(hw_with_smmu(R"(, "errata": ["123"])")), {"smmus[0].errata", "1209401", "2268618"});
  expect_mentions(hw_error(hw_with_smmu(R"(, "iidr": "0x43b", "model": "mmu-600")")), {"smmus[0].iidr", "cannot be combined"});
  expect_mentions(hw_error(hw_with_smmu(R"(, "model": "mmu-900")")), {"smmus[0].model", "\"mmu-600\", \"mmu-700\""});
  expect_mentions(hw_error(hw_with_smmu(R"(, "idr": [1, 2, 3])")), {"smmus[0].idr", "exactly 6"});
  expect_mentions(hw_error(hw_with_smmu(R"(, "idr": ["0xzz", 0, 0, 0, 0, 0])")), {"idr[0]", "not an integer"});
  expect_mentions(hw_error(hw_with_smmu(R"(, "stage2": false)")), {"smmus[0].stage2", "stage 2"});
  expect_mentions(hw_error(hw_with_smmu(R"(, "granules": ["64K"])")), {"smmus[0].granules", "4K"});
  expect_mentions(hw_error(hw_with_smmu(R"(, "granules": ["8K"])")), {"smmus[0].granules", "\"16K\""});
  expect_mentions(hw_error(R"({"kind": "hardware", "name": "t", "smmus": [{"name": "s0"}],
      "root_complexes": [{"name": "rc0", "smmu": "s9"}], "devices": []})"), {"root_complexes[0].smmu", "\"s9\"", "\"s0\""});
  expect_mentions(hw_error(R"({"kind": "hardware", "name": "t", "smmus": [{"name": "s0"}],
      "root_complexes": [{"name": "rc0", "smmu": "s0"}], "devices": [{"name": "d", "bdf": "1:2:3", "root_complex": "rc0"}]})"),
                  {"devices[0].bdf", "SSSS:BB:DD.F"});
  expect_mentions(hw_error(R"({"kind": "hardware", "name": "t", "smmus": [{"name": "s0"}, {"name": "s0"}],
      "root_complexes": [], "devices": []})"), {"smmus[1].name", "used twice"});
  expect_mentions(hw_error(R"({"kind": "hardware", "name": "t", "smmus": [{"name": "s0"}],
      "root_complexes": [{"name": "rc0", "smmu": "s0"}], "devices": [
        {"name": "a", "bdf": "00:01.0", "root_complex": "rc0", "sid": 5},
        {"name": "b", "bdf": "00:02.0", "root_complex": "rc0", "sid": 5}]})"), {"devices[1].sid", "\"a\""});
  expect_mentions(hw_error(R"({"kind": "hardware", "name": "t", "smmus": [{"name": "s0"}],
      "root_complexes": [{"name": "rc0", "smmu": "s0"}], "devices": [{"name": "a", "bdf": "00:01.0", "root_complex": "rc0"}],
      "dma_engines": [{"name": "e", "device": "a", "burst_bytes": 3000}]})"), {"dma_engines[0].burst_bytes", "power of two"});
  expect_mentions(hw_error(R"({"kind": "hardware", "name": "t", "smmus": [{"name": "s0"}],
      "root_complexes": [{"name": "rc0", "smmu": "s0"}], "devices": [{"name": "a", "bdf": "00:01.0", "root_complex": "rc0"}],
      "dma_engines": [{"name": "e", "device": "a", "fault_retry_bytes": 3}]})"), {"dma_engines[0].fault_retry_bytes", "power of two"});
  expect_mentions(hw_error(hw_with_smmu(R"(, "msi_window": [134217728])")), {"smmus[0].msi_window", "exactly 2"});
  expect_mentions(hw_error(hw_with_smmu(R"(, "msi_window": [134217728, 0])")), {"msi_window[1]"});
  expect_mentions(hw_error(hw_with_smmu(R"(, "msi_window": ["0x8000800", "0x100000"])")),
                  {"smmus[0].msi_window", "4 KiB aligned"});
  expect_mentions(hw_error(R"({"kind": "kernel", "name": "t"})"), {"kind", "hardware profile is needed"});
  expect_mentions(hw_error("{not json"), {"test.json", "not valid JSON"});

  auto k = parse_kernel_profile(R"({"kind": "kernel", "name": "k", "nest_parent_dirty": true})", "k.json");
  ASSERT_FALSE(k);
  expect_mentions(k.error().message, {"k.json", "nest_parent_dirty", "\"nest_parent_dirty_tracking\""});
  k = parse_kernel_profile(R"({"kind": "kernel", "name": "k", "strict_invalidation_fields": 1})", "k.json");
  ASSERT_FALSE(k);
  expect_mentions(k.error().message, {"strict_invalidation_fields", "true, false"});
}

// Named settings override the base registers (the model's reference SMMUv3.2, or raw "idr" values).
// The ITS the host's MSIs go to: QEMU virt's by default; elsewhere below the simulated RAM (256 MiB), 64 KiB aligned.
TEST(SimProfiles, ItsBaseDefaultsToQemuVirtsAndMustSitAlignedBelowRam) {
  auto dflt = parse_hardware_profile(hw_with_smmu(""), "test.json");
  ASSERT_TRUE(dflt) << dflt.error();
  EXPECT_EQ(dflt->its_base, 0x08080000U);
  std::string at = hw_with_smmu("");
  at.insert(1, R"("its_base": "0x0c000000", )");
  auto moved = parse_hardware_profile(at, "test.json");
  ASSERT_TRUE(moved) << moved.error();
  EXPECT_EQ(moved->its_base, 0x0c000000U);
  std::string misaligned = hw_with_smmu("");
  misaligned.insert(1, R"("its_base": "0x08081000", )");
  expect_mentions(hw_error(misaligned), {"test.json", "its_base", "64 KiB"});
  std::string in_ram = hw_with_smmu("");
  in_ram.insert(1, R"("its_base": "0x10000000", )");
  expect_mentions(hw_error(in_ram), {"its_base", "out of range"});
}

TEST(SimProfiles, NamedSettingsLandInTheIdRegisters) {
  // IDR0 from the reference with both stages cleared, IDR3 with only FWB (bit 8): the named keys win.
  const auto ref = smmu::model::ModelConfig::reference();
  const auto idr0 = smmu::Idr0(ref.idr0).set(smmu::Idr0::S1P, false).set(smmu::Idr0::S2P, false).value();
  auto hw = must(parse_hardware_profile(hw_with_smmu(fmt::format(
      R"(, "idr": [{}, 0, 0, "0x100", 0, 0], "stage1": true, "stage2": true, "httu": "access", "oas_bits": 44,
        "sid_bits": 12, "ssid_bits": 5, "ril": true, "granules": ["4K"], "model": "mmu-600", "variant": 1,
        "revision": 2, "arch": "3.1")", idr0)), "t"));
  const auto& c = hw.smmus[0].config;
  EXPECT_TRUE(c.idr0.get(smmu::Idr0::S1P));
  EXPECT_TRUE(c.idr0.get(smmu::Idr0::S2P));
  EXPECT_EQ(c.idr0.get(smmu::Idr0::HTTU), smmu::Httu::access);
  EXPECT_TRUE(c.idr3.get(smmu::Idr3::FWB)) << "from the raw IDR3 (bit 8)";
  EXPECT_TRUE(c.idr3.get(smmu::Idr3::RIL));
  EXPECT_EQ(c.idr5.get(smmu::Idr5::OAS), smmu::Oas::bits44);
  EXPECT_TRUE(c.idr5.get(smmu::Idr5::GRAN4K));
  EXPECT_FALSE(c.idr5.get(smmu::Idr5::GRAN64K));
  EXPECT_EQ(c.idr1.get(smmu::Idr1::SIDSIZE), 12U);
  EXPECT_EQ(c.idr1.get(smmu::Idr1::SSIDSIZE), 5U);
  EXPECT_EQ(c.iidr.get(smmu::Iidr::ProductID), 0x483U);
  EXPECT_EQ(c.iidr.get(smmu::Iidr::Implementer), 0x43bU);
  EXPECT_EQ(c.iidr.get(smmu::Iidr::Variant), 1U);
  EXPECT_EQ(c.iidr.get(smmu::Iidr::Revision), 2U);
  EXPECT_EQ(c.aidr.get(smmu::Aidr::ArchMinorRev), 1U);
}

// A device's StreamID is its RID unless given (identity IORT mapping); "BB:DD.F" is in its root complex's
// segment; lookups work by name and BDF.
TEST(SimProfiles, DevicesAndBdfs) {
  auto hw = must(parse_hardware_profile(R"({"kind": "hardware", "name": "t", "smmus": [{"name": "s0"}],
      "root_complexes": [{"name": "rc0", "smmu": "s0", "segment": 3}],
      "devices": [{"name": "a", "bdf": "05:1f.7", "root_complex": "rc0"},
                  {"name": "b", "bdf": "0003:06:00.0", "root_complex": "rc0", "sid": 9}]})", "t"));
  EXPECT_EQ(hw.devices[0].sid, 0x5ffU);
  EXPECT_EQ(hw.devices[0].bdf.segment, 3U);
  EXPECT_EQ(hw.devices[1].sid, 9U);
  EXPECT_EQ(hw.find_device("0003:05:1f.7"), 0U);
  EXPECT_EQ(hw.find_device("b"), 1U);
  EXPECT_FALSE(hw.find_device("c"));
  expect_mentions(hw_error(R"({"kind": "hardware", "name": "t", "smmus": [{"name": "s0"}],
      "root_complexes": [{"name": "rc0", "smmu": "s0", "segment": 3}],
      "devices": [{"name": "a", "bdf": "0004:05:00.0", "root_complex": "rc0"}]})"), {"devices[0].bdf", "segment"});
}

// A profile in a file a user writes, with a typo, reports the file's path.
TEST(SimProfiles, FileErrorsNameThePath) {
  char tmpl[] = "/tmp/vsmmu-profile-XXXXXX";
  const int fd = ::mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ::close(fd);
  {
    std::ofstream out(tmpl);
    out << R"({"kind": "kernel", "name": "mine", "nested_atach_without_vdevice": false})";
  }
  auto k = load_kernel_profile(tmpl);
  ::unlink(tmpl);
  ASSERT_FALSE(k);
  expect_mentions(k.error().message, {tmpl, "nested_atach_without_vdevice", "\"nested_attach_without_vdevice\""});
}

}  // namespace
}  // namespace vsmmu::host::sim::test

namespace vsmmu::host::sim::test {
namespace {

// An SMMU's software MSI window (IOMMU_RESV_SW_MSI) is arm-smmu-v3's MSI_IOVA_BASE/LENGTH unless the profile
// gives another: what a host with a differently configured driver would report.
TEST(SimProfiles, MsiWindowIsArmSmmuV3sUnlessTheProfileSaysOtherwise) {
  auto def = parse_hardware_profile(hw_with_smmu(""), "t.json");
  ASSERT_TRUE(def) << def.error();
  EXPECT_EQ(def->smmus[0].msi_window, kArmSmmuV3SwMsi);
  auto moved = parse_hardware_profile(hw_with_smmu(R"(, "msi_window": ["0x10000000", "0x10000"])"), "t.json");
  ASSERT_TRUE(moved) << moved.error();
  EXPECT_EQ(moved->smmus[0].msi_window, (IovaRange{0x10000000, 0x1000ffff}));
}

}  // namespace
}  // namespace vsmmu::host::sim::test
