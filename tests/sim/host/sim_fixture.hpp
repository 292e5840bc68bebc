// Shared helpers of the simulated-host tests: hosts from the embedded profiles, a memfd as guest RAM with a
// guest's view of it (to write CDs and stage-1 tables with TableBuilder), the vSTE and commands a guest
// writes, and a vEVENTQ reader.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "host/handles.hpp"
#include "host/sim/host_memory.hpp"
#include "host/sim/sim_host.hpp"
#include "host/veventq_reader.hpp"
#include "smmu/cd.hpp"
#include "smmu/command.hpp"
#include "smmu/event.hpp"
#include "smmu/ste.hpp"
#include "smmu/table_builder.hpp"

namespace vsmmu::host::sim::test {

inline std::unique_ptr<SimHost> make_host(std::string_view kernel = "upstream", std::string_view hardware = "default") {
  auto k = embedded_kernel_profile(kernel);
  EXPECT_TRUE(k) << k.error();
  auto h = embedded_hardware_profile(hardware);
  EXPECT_TRUE(h) << h.error();
  if (!k || !h) return nullptr;
  auto host = SimHost::create(std::move(*k), std::move(*h));
  EXPECT_TRUE(host) << host.error();
  return host ? std::move(*host) : nullptr;
}

template <class T>
T must(Result<T> r) {
  EXPECT_TRUE(r) << r.error();
  if (!r) throw std::runtime_error(r.error().to_string());
  return std::move(*r);
}

// The errno of a failed call (0 when it succeeded).
template <class T>
int err_of(const Result<T>& r) {
  return r ? 0 : r.error().err;
}

// Guest RAM: a memfd the test maps too, and a PhysicalMemory view of it at the guest-physical base, in which
// the test writes what a guest's driver writes (CD tables, stage-1 tables).
struct GuestRam {
  static constexpr std::uint64_t kBase = 0x4000'0000;  // IPA of the first byte (as on QEMU's virt machine)

  UniqueFd fd;
  MappedRegion map;
  smmu::RegionMemory view;
  std::uint64_t size = 0;

  explicit GuestRam(std::uint64_t bytes) : size(bytes) {
    fd = UniqueFd(::memfd_create("vsmmu-guest-ram", MFD_CLOEXEC));
    EXPECT_GE(fd.get(), 0);
    EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(bytes)), 0);
    map = must(MappedRegion::file(fd.get(), 0, bytes, true));
    EXPECT_TRUE(view.add_borrowed(kBase, map.bytes()));
  }
  std::byte* at(std::uint64_t ipa) { return map.bytes().data() + (ipa - kBase); }
};

// The guest side of a nested stream: stage-1 tables and one CD (a linear CD table of one entry) in guest RAM.
struct GuestStage1 {
  static constexpr std::uint16_t kAsid = 7;
  GuestRam& ram;
  smmu::TablePageAllocator pool;
  smmu::TableBuilder tables;
  std::uint64_t cd_ipa = 0;

  // Tables live in the last 8 MiB of guest RAM.
  explicit GuestStage1(GuestRam& r)
      : ram(r),
        pool(r.view, GuestRam::kBase + r.size - (8ULL << 20), 8ULL << 20),
        tables(r.view, pool, smmu::Stage::s1, smmu::Granule::k4K, 48) {
    EXPECT_TRUE(tables.init());
    auto cd = pool.allocate(smmu::Cd::bytes, 64);
    EXPECT_TRUE(cd);
    cd_ipa = *cd;
    smmu::Cd c;
    c.set(smmu::Cd::V, true)
        .set(smmu::Cd::AA64, true)
        .set(smmu::Cd::EPD1, true)
        .set(smmu::Cd::R, true)
        .set(smmu::Cd::A, true)
        .set(smmu::Cd::T0SZ, tables.t0sz())
        .set(smmu::Cd::TG0, smmu::tg0_from_granule(smmu::Granule::k4K))
        .set(smmu::Cd::IPS, 5)
        .set(smmu::Cd::ASID, kAsid)
        .set(smmu::Cd::MAIR, 0xff)
        .set(smmu::Cd::TTB0, tables.root());
    EXPECT_TRUE(r.view.write_record(cd_ipa, c));
  }
  void map(std::uint64_t va, std::uint64_t ipa, std::uint64_t size, bool write = true) {
    smmu::MapAttributes a;
    a.write = write;
    ASSERT_TRUE(tables.map(va, ipa, size, a));
  }
  // The vSTE a guest writes for a stage-1 stream through this CD table.
  std::array<std::byte, 16> vste(bool eats = false) const {
    smmu::Ste s;
    s.set(smmu::Ste::V, true)
        .set(smmu::Ste::Config, smmu::StreamConfig::s1_translate)
        .set(smmu::Ste::S1Fmt, smmu::CdTableFormat::linear)
        .set(smmu::Ste::S1ContextPtr, cd_ipa)
        .set(smmu::Ste::S1CDMax, 0)
        .set(smmu::Ste::S1DSS, smmu::S1Dss::terminate)
        .set(smmu::Ste::EATS, eats ? smmu::Eats::translate : smmu::Eats::abort);
    return words(s);
  }
  static std::array<std::byte, 16> words(const smmu::Ste& s) {
    std::array<std::byte, 16> out{};
    auto all = s.to_bytes();
    std::memcpy(out.data(), all.data(), 16);
    return out;
  }
};

inline std::array<std::byte, 16> vste_config(smmu::StreamConfig cfg, bool valid = true) {
  smmu::Ste s;
  s.set(smmu::Ste::V, valid).set(smmu::Ste::Config, cfg);
  return GuestStage1::words(s);
}

// Guest commands as a guest's driver writes them (the kernel rewrites VMID and SID).
inline smmu::Command tlbi_nh_va(std::uint16_t asid, std::uint64_t va) {
  smmu::Command c;
  c.set(smmu::Command::Opcode, smmu::Opcode::TLBI_NH_VA).set(smmu::Command::ASID, asid).set(smmu::Command::Address, va)
      .set(smmu::Command::Leaf, true);
  return c;
}
inline smmu::Command op(smmu::Opcode o) { return smmu::Command{}.set(smmu::Command::Opcode, o); }
inline smmu::Command cfgi_cd(std::uint32_t vsid, std::uint32_t ssid = 0) {
  return op(smmu::Opcode::CFGI_CD).set(smmu::Command::SID, vsid).set(smmu::Command::SSID, ssid).set(smmu::Command::Leaf, true);
}
inline std::vector<std::byte> entries(std::span<const smmu::Command> cmds) {
  std::vector<std::byte> out;
  for (const auto& c : cmds) {
    auto b = c.to_bytes();
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

// Reads every record the vEVENTQ fd holds now.
inline std::vector<VeventqRecord> read_events(VeventqReader& reader) {
  std::vector<VeventqRecord> out;
  for (;;) {
    auto n = reader.read_available(out);
    EXPECT_TRUE(n) << n.error();
    if (!n || *n == 0) break;
  }
  return out;
}

// A nested setup on one device: the objects a VMM creates, owned by RAII handles declared parent-first.
struct NestedSetup {
  static constexpr std::uint64_t kVsid = 0x42;
  BoundDevice dev;
  HostObject ioas;
  HostObject parent;
  HostObject viommu;
  HostObject vdevice;
  QueueObject veventq;
  HostObject nested;
  Attachment attachment;
};

inline constexpr std::uint32_t kMapRW = uapi::kIoasMapFixedIova | uapi::kIoasMapReadable | uapi::kIoasMapWriteable;

// The whole setup a VMM does for one device behind a vSMMU: bind, IOAS with the guest RAM memfd at its IPA,
// nest parent (with `parent_flags` added), vIOMMU, vDEVICE (vSID kVsid), vEVENTQ, nested HWPT from `vste`,
// attach. Stops (with a test failure) at the first call that fails.
inline void build_nested(SimHost& host, GuestRam& ram, std::span<const std::byte> vste, NestedSetup& s,
                         const char* device = "nic0", std::uint32_t depth = 16, std::uint32_t parent_flags = 0) {
  s.dev = BoundDevice(host, must(host.bind_device(device)));
  s.ioas = HostObject(host, must(host.ioas_alloc()));
  ASSERT_EQ(must(host.ioas_map_file(s.ioas.id(), ram.fd.get(), 0, ram.size, GuestRam::kBase, kMapRW)), GuestRam::kBase);
  s.parent = HostObject(host, must(host.hwpt_alloc(
                                  paging_request(s.dev.id(), s.ioas.id(), uapi::kHwptAllocNestParent | parent_flags))));
  s.viommu = HostObject(host, must(host.viommu_alloc(s.dev.id(), s.parent.id(), uapi::kViommuTypeArmSmmuv3)));
  s.vdevice = HostObject(host, must(host.vdevice_alloc(s.viommu.id(), s.dev.id(), NestedSetup::kVsid)));
  auto q = must(host.veventq_alloc(s.viommu.id(), uapi::kVeventqTypeArmSmmuv3, depth));
  s.veventq = QueueObject(host, q.id, q.fd);
  s.nested = HostObject(host, must(host.hwpt_alloc(nested_request(s.dev.id(), s.viommu.id(), vste))));
  ASSERT_TRUE(host.attach(s.dev.id(), s.nested.id()));
  s.attachment = Attachment(host, s.dev.id());
}

// One IOMMU_HWPT_INVALIDATE of `cmds` on a vIOMMU.
inline InvalidateOutcome invalidate(SimHost& host, ObjectId viommu, std::span<const smmu::Command> cmds) {
  auto bytes = entries(cmds);
  InvalidateRequest inv;
  inv.id = viommu;
  inv.entry_num = static_cast<std::uint32_t>(cmds.size());
  inv.data = bytes;
  return host.hwpt_invalidate(inv);
}

}  // namespace vsmmu::host::sim::test
