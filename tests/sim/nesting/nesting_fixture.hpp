// Shared helpers of the whole-stack vSMMU tests: a SimHost from the embedded profiles (or a hardware profile
// written in the test), a GuestHarness on it, guest pages mapped for a device, and DMA checks. The guest talks
// to the VirtualSmmu only through its registers and its RAM, as a guest kernel does.
#pragma once

#include <gtest/gtest.h>

#include <cstring>

#include <fmt/format.h>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "testing/guest_harness.hpp"
#include "host/sim/sim_host.hpp"
#include "smmu/driver/commands.hpp"
#include "smmu/event.hpp"
#include "smmu/registers.hpp"

namespace vsmmu::nesting::test {

using host::sim::SimHost;
using testkit::GuestHarness;
using testkit::GuestHarnessConfig;

template <class T>
T must(Result<T> r) {
  if (!r) ADD_FAILURE() << r.error();
  EXPECT_TRUE(r.has_value());
  return std::move(*r);
}
inline void must(Result<void> r) { ASSERT_TRUE(r.has_value()) << r.error(); }

// vSIDs the guest knows the default profile's devices by.
constexpr std::uint32_t kNic0 = 0x10;
constexpr std::uint32_t kNic1 = 0x18;
constexpr std::uint32_t kGpu0 = 0x20;
constexpr std::uint16_t kAsid = 5;
constexpr std::uint16_t kAsidA = 1;  // two address spaces of one guest
constexpr std::uint16_t kAsidB = 2;
constexpr std::uint64_t kVa = 0x7f00'0000'0000;
constexpr std::uint64_t kPage = 0x1000;

// The default hardware's smmu1 (gpu0, nvme0) outputs 44 bits: a vSMMU there serves a guest of 40-bit IPAs.
inline VirtualSmmuConfig smmu1_config() {
  VirtualSmmuConfig c;
  c.wishes.ipa_bits = 40;
  return c;
}

inline std::vector<std::byte> pattern(std::size_t n, std::uint8_t seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<std::uint8_t>(seed + i * 7));
  return v;
}

// A host from embedded profiles by name, or with a hardware profile given as JSON text.
inline std::unique_ptr<SimHost> host_from(Result<host::sim::KernelProfile> k, Result<host::sim::HardwareProfile> h) {
  if (!k || !h) {
    ADD_FAILURE() << (!k ? k.error() : h.error());
    return nullptr;
  }
  auto s = SimHost::create(std::move(*k), std::move(*h));
  if (!s) ADD_FAILURE() << s.error();
  return s ? std::move(*s) : nullptr;
}
inline std::unique_ptr<SimHost> make_host(std::string_view kernel = "upstream", std::string_view hardware = "default") {
  return host_from(host::sim::embedded_kernel_profile(kernel), host::sim::embedded_hardware_profile(hardware));
}
inline std::unique_ptr<SimHost> make_host_with_hardware(std::string_view hardware_json) {
  return host_from(host::sim::embedded_kernel_profile("upstream"), host::sim::parse_hardware_profile(hardware_json, "test"));
}

// Two physical SMMUs with S2FWB, alike but for IDR3.RIL when `ril_differs`, each with one device (devA behind
// smmuA, devB behind smmuB) and its DMA engine.
inline std::string twin_smmus_profile(bool ril_differs) {
  return fmt::format(R"({{
    "kind": "hardware", "name": "twins",
    "smmus": [ {{ "name": "smmuA", "s2fwb": true, "ril": true }}, {{ "name": "smmuB", "s2fwb": true, "ril": {} }} ],
    "root_complexes": [ {{ "name": "pcieA", "smmu": "smmuA", "segment": 0 }},
                        {{ "name": "pcieB", "smmu": "smmuB", "segment": 1 }} ],
    "devices": [ {{ "name": "devA", "bdf": "0000:01:00.0", "root_complex": "pcieA" }},
                 {{ "name": "devB", "bdf": "0001:01:00.0", "root_complex": "pcieB" }} ],
    "dma_engines": [ {{ "name": "devA.dma", "device": "devA" }}, {{ "name": "devB.dma", "device": "devB" }} ]
  }})", ril_differs ? "false" : "true");
}

// Names a parameterised test after its parameter's `name`.
struct ByName {
  template <class P>
  std::string operator()(const ::testing::TestParamInfo<P>& p) const { return p.param.name; }
};

class NestingSim : public ::testing::Test {
 protected:
  void SetUp() override {
    host = make_host();
    ASSERT_TRUE(host);
  }

  std::unique_ptr<GuestHarness> make(std::vector<DeviceSpec> devices, VirtualSmmuConfig cfg = {},
                                     smmu::driver::Options driver = {}) {
    GuestHarnessConfig c;
    c.vsmmu = std::move(cfg);
    c.devices = std::move(devices);
    c.driver = std::move(driver);
    auto g = GuestHarness::create(*host, c);
    if (!g) {
      ADD_FAILURE() << g.error();
      return nullptr;
    }
    return std::move(*g);
  }

  // A page of guest RAM mapped at `va` for `asid`, the device attached to that address space.
  static std::uint64_t map_page(GuestHarness& g, std::uint32_t vsid, std::uint16_t asid, std::uint64_t va = kVa) {
    const std::uint64_t gpa = must(g.alloc(kPage));
    must(g.map(asid, va, gpa, kPage));
    must(g.attach(vsid, asid));
    return gpa;
  }

  // Whether a DMA write of `data` by `engine` at `iova` completed.
  bool dma(std::string_view engine, std::uint64_t iova, std::span<const std::byte> data) {
    auto r = host->dma_write(engine, iova, data);
    if (!r) {
      ADD_FAILURE() << r.error();
      return false;
    }
    return r->ok();
  }

  // Whether guest RAM at `gpa` holds `data`.
  static bool holds(GuestHarness& g, std::uint64_t gpa, std::span<const std::byte> data) {
    auto b = g.bytes(gpa, data.size());
    return b.size() == data.size() && std::memcmp(b.data(), data.data(), data.size()) == 0;
  }

  // A DMA write by `engine` at `iova` that completes and lands at `gpa` (a pattern from `seed`).
  bool lands(GuestHarness& g, std::string_view engine, std::uint64_t iova, std::uint64_t gpa, std::uint8_t seed) {
    const auto data = pattern(64, seed);
    return dma(engine, iova, data) && holds(g, gpa, data);
  }

  // The guest reads exactly one C_BAD_STE, with `vsid` (IHI 0070 7.3.5), and the stream aborts; returns why.
  static std::string expect_c_bad_ste(GuestHarness& g, std::uint32_t vsid) {
    auto ev = must(g.events());
    EXPECT_EQ(ev.records.size(), 1U);
    if (ev.records.size() == 1) {
      EXPECT_EQ(ev.records[0].get(smmu::Event::ID), smmu::EventId::C_BAD_STE);
      EXPECT_EQ(ev.records[0].get(smmu::Event::SID), vsid);
    }
    const StreamStatus st = must(g.vsmmu().stream_status(vsid));
    EXPECT_EQ(st.state, StreamState::abort);
    EXPECT_TRUE(st.problem.has_value());
    return st.problem.value_or("");
  }

  // The STE the guest wrote for `vsid`, as it lies in guest RAM.
  static smmu::Ste guest_ste(GuestHarness& g, std::uint32_t vsid) {
    const std::uint64_t at = must(g.driver().ste_address(vsid));
    auto read = g.memory().view().read_record<smmu::Ste>(at);
    EXPECT_TRUE(read.has_value()) << "no guest RAM behind the STE at " << at;
    return read.value_or(smmu::Ste{});
  }

  std::unique_ptr<SimHost> host;
};

}  // namespace vsmmu::nesting::test
