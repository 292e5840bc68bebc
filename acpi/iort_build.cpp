#include "acpi/iort_build.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "acpi/bytes.hpp"
#include "base/try.hpp"

namespace vsmmu::acpi::iort {

using namespace layout;

namespace {

void append_memory(std::vector<std::uint8_t>& out, const MemoryAccess& m) {
  append_le(out, m.cache_coherency, 4);
  append_le(out, m.hints, 1);
  append_le(out, 0, 2);  // reserved
  append_le(out, m.flags, 1);
}

void append_irq(std::vector<std::uint8_t>& out, const SmmuInterrupt& irq) {
  append_le(out, irq.gsiv, 4);
  append_le(out, irq.flags, 4);
}

}  // namespace

std::uint32_t Builder::next_offset() const { return static_cast<std::uint32_t>(kHeaderSize + nodes_.size()); }

std::uint32_t Builder::add(NodeType type, std::uint8_t revision, std::uint32_t identifier,
                           const std::vector<std::uint8_t>& fields, std::span<const IdMapping> maps,
                           const std::vector<std::uint8_t>& tail) {
  const std::uint32_t offset = next_offset();
  const std::size_t mapping_offset = kNodeHeaderSize + fields.size();
  const std::size_t length = mapping_offset + maps.size() * kIdMappingSize + tail.size();
  if (length > 0xffff && !error_)
    error_ = Error{E2BIG, "iort.build",
                   fmt::format("the {} node at {:#x} would be {} bytes; a node length is 16 bits (at most 65535): "
                               "split its ID mappings across more nodes",
                               node_type_name(static_cast<std::uint8_t>(type)), offset, length)};
  append_le(nodes_, static_cast<std::uint8_t>(type), 1);
  append_le(nodes_, length, 2);
  append_le(nodes_, revision, 1);
  append_le(nodes_, identifier, 4);
  append_le(nodes_, maps.size(), 4);
  append_le(nodes_, maps.empty() ? 0 : mapping_offset, 4);
  nodes_.insert(nodes_.end(), fields.begin(), fields.end());
  for (const auto& m : maps) {
    append_le(nodes_, m.input_base, 4);
    append_le(nodes_, m.id_count, 4);
    append_le(nodes_, m.output_base, 4);
    append_le(nodes_, m.output_reference, 4);
    append_le(nodes_, m.flags, 4);
  }
  nodes_.insert(nodes_.end(), tail.begin(), tail.end());
  ++count_;
  return offset;
}

std::uint32_t Builder::its_group(std::uint8_t revision, std::uint32_t identifier, const ItsGroup& its) {
  std::vector<std::uint8_t> f;
  append_le(f, its.its_ids.size(), 4);
  for (auto id : its.its_ids) append_le(f, id, 4);
  return add(NodeType::its_group, revision, identifier, f, {});
}

std::uint32_t Builder::named_component(std::uint8_t revision, std::uint32_t identifier, const NamedComponent& nc,
                                       std::span<const IdMapping> maps) {
  std::vector<std::uint8_t> f;
  append_le(f, nc.node_flags, 4);
  append_memory(f, nc.memory);
  append_le(f, nc.memory_address_limit, 1);
  f.insert(f.end(), nc.device_name.begin(), nc.device_name.end());
  f.push_back(0);
  // The ID mapping array that follows starts 4-byte aligned, as edk2 and ACPICA lay it out.
  while ((kNodeHeaderSize + f.size()) % 4) f.push_back(0);
  return add(NodeType::named_component, revision, identifier, f, maps);
}

std::uint32_t Builder::root_complex(std::uint8_t revision, std::uint32_t identifier, const RootComplex& rc,
                                    std::span<const IdMapping> maps) {
  std::vector<std::uint8_t> f;
  append_memory(f, rc.memory);
  append_le(f, rc.ats_attribute, 4);
  append_le(f, rc.pci_segment, 4);
  if (revision >= 1) {
    append_le(f, rc.memory_address_limit.value_or(0), 1);
    if (revision >= 4) {
      append_le(f, rc.pasid_capabilities.value_or(0), 2);
      append_le(f, 0, 1);  // reserved
      append_le(f, rc.flags.value_or(0), 4);
    } else {
      append_le(f, 0, 3);  // reserved
    }
  }
  return add(NodeType::root_complex, revision, identifier, f, maps);
}

std::uint32_t Builder::smmu(std::uint8_t revision, std::uint32_t identifier, const Smmu& s,
                            std::span<const IdMapping> maps) {
  const std::size_t ctx_offset = kSmmuSize + kSmmuGlobalIrqSize;
  const std::size_t pmu_offset = ctx_offset + s.context_interrupts.size() * kSmmuIrqEntrySize;
  std::vector<std::uint8_t> f;
  append_le(f, s.base, 8);
  append_le(f, s.span, 8);
  append_le(f, s.model, 4);
  append_le(f, s.flags, 4);
  append_le(f, kSmmuSize, 4);  // the global interrupt array follows the fixed fields
  append_le(f, s.context_interrupts.size(), 4);
  append_le(f, s.context_interrupts.empty() ? 0 : ctx_offset, 4);
  append_le(f, s.pmu_interrupts.size(), 4);
  append_le(f, s.pmu_interrupts.empty() ? 0 : pmu_offset, 4);
  append_irq(f, s.nsg_irpt);
  append_irq(f, s.nsg_cfg_irpt);
  for (const auto& irq : s.context_interrupts) append_irq(f, irq);
  for (const auto& irq : s.pmu_interrupts) append_irq(f, irq);
  return add(NodeType::smmu, revision, identifier, f, maps);
}

std::uint32_t Builder::smmu_v3(std::uint8_t revision, std::uint32_t identifier, const SmmuV3& s,
                               std::span<const IdMapping> maps) {
  std::vector<std::uint8_t> f;
  append_le(f, s.base, 8);
  append_le(f, s.flags, 4);
  append_le(f, 0, 4);  // reserved
  append_le(f, s.vatos_address, 8);
  append_le(f, s.model, 4);
  append_le(f, s.event_gsiv, 4);
  append_le(f, s.pri_gsiv, 4);
  append_le(f, s.gerr_gsiv, 4);
  append_le(f, s.sync_gsiv, 4);
  if (revision >= 1) append_le(f, s.proximity_domain.value_or(0), 4);
  if (revision >= 2) append_le(f, s.id_mapping_index.value_or(0), 4);
  return add(NodeType::smmu_v3, revision, identifier, f, maps);
}

std::uint32_t Builder::pmcg(std::uint8_t revision, std::uint32_t identifier, const Pmcg& p,
                            std::span<const IdMapping> maps) {
  std::vector<std::uint8_t> f;
  append_le(f, p.page0_base, 8);
  append_le(f, p.overflow_gsiv, 4);
  append_le(f, p.node_reference, 4);
  if (revision >= 1) append_le(f, p.page1_base.value_or(0), 8);
  return add(NodeType::pmcg, revision, identifier, f, maps);
}

std::uint32_t Builder::rmr(std::uint8_t revision, std::uint32_t identifier, const Rmr& r,
                           std::span<const IdMapping> maps) {
  std::vector<std::uint8_t> f;
  append_le(f, r.flags, 4);
  append_le(f, r.ranges.size(), 4);
  // The descriptors follow the ID mapping array (DEN 0049 Table 22, the layout edk2 and QEMU emit).
  append_le(f, kRmrSize + maps.size() * kIdMappingSize, 4);
  std::vector<std::uint8_t> tail;
  for (const auto& range : r.ranges) {
    append_le(tail, range.base, 8);
    append_le(tail, range.length, 8);
    append_le(tail, 0, 4);  // reserved
  }
  return add(NodeType::rmr, revision, identifier, f, maps, tail);
}

Result<std::vector<std::uint8_t>> Builder::finish() const {
  if (error_) return std::unexpected(*error_);
  std::vector<std::uint8_t> t;
  append_padded(t, "IORT", 4);
  append_le(t, kHeaderSize + nodes_.size(), 4);
  append_le(t, identity_.revision, 1);
  append_le(t, 0, 1);  // checksum, fixed below
  append_padded(t, identity_.oem_id, kOemIdSize);
  append_padded(t, identity_.oem_table_id, kOemTableIdSize);
  append_le(t, identity_.oem_revision, 4);
  append_padded(t, identity_.creator_id, kCreatorIdSize);
  append_le(t, identity_.creator_revision, 4);
  append_le(t, count_, 4);
  append_le(t, count_ ? kHeaderSize : 0, 4);
  append_le(t, 0, 4);  // reserved
  t.insert(t.end(), nodes_.begin(), nodes_.end());
  t[kChecksum] = static_cast<std::uint8_t>(0x100 - byte_sum(t));
  return t;
}

namespace {

// Revisions per DEN 0049 issue, as edk2's generator and QEMU emit them for tables of revision 5 and 6.
constexpr std::uint8_t kItsRevision = 1, kRcRevision = 4, kRmrRevision = 3;
constexpr std::uint32_t kRidSpace = 0x10000;  // 16-bit requester IDs per PCI segment

Result<void> check_spec(const GuestIort& spec) {
  const auto& id = spec.identity;
  if (id.revision != 5 && id.revision != 6)
    return fail(EINVAL, "iort.build",
                "table revision {} is not supported for guest tables: use 5 (DEN 0049 E.d) or 6 (E.e); Linux reads "
                "RMR nodes only from 5 on",
                id.revision);
  if (id.oem_id.size() > kOemIdSize || id.oem_table_id.size() > kOemTableIdSize ||
      id.creator_id.size() > kCreatorIdSize)
    return fail(EINVAL, "iort.build", "OEM ID '{}' / OEM table ID '{}' / creator ID '{}' exceed 6 / 8 / 4 characters",
                id.oem_id, id.oem_table_id, id.creator_id);
  if (spec.smmus.empty()) return fail(EINVAL, "iort.build", "a guest IORT needs at least one vSMMU");
  if (spec.root_complexes.empty())
    return fail(EINVAL, "iort.build", "a guest IORT needs at least one PCI root complex behind the vSMMU");
  if (spec.msi_rmr && spec.msi_windows.empty())
    return fail(EINVAL, "iort.build",
                "the RMR nodes need the host's MSI window: read it from the host (the devices' reserved regions) "
                "or give it (--msi-window BASE,SIZE), or leave the RMR nodes out");
  for (const auto& w : spec.msi_rmr ? spec.msi_windows : std::vector<RmrRange>{})
    if (w.length == 0 || w.base % 0x10000 || w.length % 0x10000)
      return fail(EINVAL, "iort.build",
                  "the MSI window [{:#x}, +{:#x}) must be non-empty and 64 KiB aligned (DEN 0049 Table 23)", w.base,
                  w.length);
  for (std::size_t i = 0; i < spec.smmus.size(); ++i) {
    const auto& s = spec.smmus[i];
    for (std::size_t j = 0; j < i; ++j)
      if (spec.smmus[j].base == s.base)
        return fail(EINVAL, "iort.build", "vSMMUs {} and {} share the base address {:#x}", j, i, s.base);
    if (s.base % 0x10000)
      return fail(EINVAL, "iort.build", "vSMMU {} base {:#x} is not 64 KiB aligned (SMMUv3 register pages are 64 KiB)",
                  i, s.base);
    if (spec.its_ids.empty() && !(s.event_gsiv && s.pri_gsiv && s.gerr_gsiv && s.sync_gsiv))
      return fail(EINVAL, "iort.build",
                  "vSMMU {} leaves a line unwired, so Linux looks for its MSI DeviceID mapping, but without an ITS "
                  "there is none to give (FW_BUG 'ID mapping index overflows'); wire event, pri, gerr and sync or "
                  "keep the ITS",
                  i);
  }
  std::vector<std::uint32_t> segments;
  for (std::size_t r = 0; r < spec.root_complexes.size(); ++r) {
    const auto& rc = spec.root_complexes[r];
    if (std::find(segments.begin(), segments.end(), rc.segment) != segments.end())
      return fail(EINVAL, "iort.build",
                  "two root complexes claim PCI segment {}; Linux matches root complexes by segment", rc.segment);
    segments.push_back(rc.segment);
    for (std::size_t i = 0; i < rc.maps.size(); ++i) {
      const auto& m = rc.maps[i];
      if (m.count == 0) return fail(EINVAL, "iort.build", "root complex {} map {} covers no RIDs (count 0)", r, i);
      if (std::uint64_t{m.rid_base} + m.count > kRidSpace)
        return fail(EINVAL, "iort.build",
                    "root complex {} map {}: RIDs {:#x} + {:#x} run past {:#x}; requester IDs are 16 bits", r, i,
                    m.rid_base, m.count, kRidSpace);
      if (std::uint64_t{m.vsid_base} + m.count > 0x100000000ULL)
        return fail(EINVAL, "iort.build", "root complex {} map {}: vSIDs {:#x} + {:#x} run past 32 bits", r, i,
                    m.vsid_base, m.count);
      if (m.smmu >= spec.smmus.size())
        return fail(EINVAL, "iort.build", "root complex {} map {} names vSMMU {}, but there are {}", r, i, m.smmu,
                    spec.smmus.size());
      for (std::size_t j = 0; j < i; ++j) {
        const auto& o = rc.maps[j];
        if (m.rid_base < o.rid_base + o.count && o.rid_base < m.rid_base + m.count)
          return fail(EINVAL, "iort.build", "root complex {}: maps {} and {} both claim RIDs from {:#x}", r, j, i,
                      std::max(m.rid_base, o.rid_base));
      }
    }
  }
  // vSIDs of one vSMMU must not repeat: a stream ID names one device.
  for (std::size_t s = 0; s < spec.smmus.size(); ++s) {
    std::vector<const GuestRidMap*> maps;
    for (const auto& rc : spec.root_complexes)
      for (const auto& m : rc.maps)
        if (m.smmu == s) maps.push_back(&m);
    for (std::size_t i = 0; i < maps.size(); ++i)
      for (std::size_t j = 0; j < i; ++j) {
        const auto& a = *maps[i];
        const auto& b = *maps[j];
        if (std::uint64_t{a.vsid_base} < std::uint64_t{b.vsid_base} + b.count &&
            std::uint64_t{b.vsid_base} < std::uint64_t{a.vsid_base} + a.count)
          return fail(EINVAL, "iort.build", "vSMMU {}: two RID maps share vSIDs from {:#x}; a vSID names one device", s,
                      std::max(a.vsid_base, b.vsid_base));
      }
  }
  return {};
}

IdMapping mapping(std::uint64_t input, std::uint64_t count, std::uint64_t output, std::uint32_t ref,
                  std::uint32_t flags = 0) {
  return IdMapping{static_cast<std::uint32_t>(input), static_cast<std::uint32_t>(count - 1),
                   static_cast<std::uint32_t>(output), ref, flags, 0};
}

}  // namespace

Result<std::vector<std::uint8_t>> build_guest(const GuestIort& spec) {
  VSMMU_TRY(check_spec(spec));
  Builder b(spec.identity);
  std::uint32_t identifier = 0;
  const bool has_its = !spec.its_ids.empty();
  const std::uint32_t its = has_its ? b.its_group(kItsRevision, identifier++, ItsGroup{spec.its_ids}) : 0;
  const std::uint8_t smmu_revision = spec.identity.revision >= 6 ? 5 : 4;

  std::vector<std::uint32_t> smmu_offsets;
  for (std::size_t i = 0; i < spec.smmus.size(); ++i) {
    const auto& g = spec.smmus[i];
    SmmuV3 s;
    s.base = g.base;
    s.flags = g.coherent ? SmmuV3::kCohaccOverride : 0;
    s.event_gsiv = g.event_gsiv;
    s.pri_gsiv = g.pri_gsiv;
    s.gerr_gsiv = g.gerr_gsiv;
    s.sync_gsiv = g.sync_gsiv;
    s.proximity_domain = 0;
    s.id_mapping_index = 0;
    std::vector<IdMapping> maps;
    if (has_its) {
      // The SMMU's output stream IDs reach the ITS as DeviceIDs; mapping each vSID range back to its
      // requester IDs keeps the DeviceID a device's MSIs carry equal to its RID, as without a vSMMU.
      for (const auto& rc : spec.root_complexes)
        for (const auto& m : rc.maps)
          if (m.smmu == i) maps.push_back(mapping(m.vsid_base, m.count, m.rid_base, its));
      if (!s.all_gsivs()) {
        // An unwired line means the SMMU may signal by MSI; Linux then takes its DeviceID from the
        // mapping at id_mapping_index, which must be a single mapping to the ITS.
        s.id_mapping_index = static_cast<std::uint32_t>(maps.size());
        maps.push_back(mapping(0, 1, g.msi_device_id.value_or(static_cast<std::uint32_t>(0x10000 + i)), its,
                               IdMapping::kSingleMapping));
        if (smmu_revision >= 5) s.flags |= SmmuV3::kDeviceIdValid;
      }
    }
    smmu_offsets.push_back(b.smmu_v3(smmu_revision, identifier++, s, maps));
  }

  for (const auto& g : spec.root_complexes) {
    RootComplex rc;
    rc.memory = MemoryAccess{1, 0,
                             static_cast<std::uint8_t>(MemoryAccess::kCoherency | MemoryAccess::kAttributes |
                                                       (g.canwbs ? MemoryAccess::kCanwbs : 0))};
    rc.ats_attribute = g.ats ? RootComplex::kAtsSupported : 0;
    rc.pci_segment = g.segment;
    rc.memory_address_limit = g.memory_address_limit;
    rc.pasid_capabilities = 0;
    rc.flags = 0;
    auto sorted = g.maps;
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& c) { return a.rid_base < c.rid_base; });
    std::vector<IdMapping> maps;
    std::uint64_t next = 0;  // first RID not yet mapped
    auto bypass_to = [&](std::uint64_t end) {
      // RIDs behind no vSMMU (emulated devices) still need an ITS DeviceID for their MSIs.
      if (has_its && end > next) maps.push_back(mapping(next, end - next, next, its));
    };
    for (const auto& m : sorted) {
      bypass_to(m.rid_base);
      maps.push_back(mapping(m.rid_base, m.count, m.vsid_base, smmu_offsets[m.smmu]));
      next = std::uint64_t{m.rid_base} + m.count;
    }
    bypass_to(kRidSpace);
    b.root_complex(kRcRevision, identifier++, rc, maps);
  }

  if (spec.msi_rmr) {
    for (std::size_t i = 0; i < spec.smmus.size(); ++i) {
      std::vector<IdMapping> maps;
      for (const auto& rc : spec.root_complexes)
        for (const auto& m : rc.maps)
          if (m.smmu == i) maps.push_back(mapping(m.vsid_base, m.count, m.vsid_base, smmu_offsets[i]));
      if (maps.empty()) continue;
      // Flags 0: the range may not be remapped (the guest keeps it 1:1) and is device memory, as an
      // MSI doorbell is.
      b.rmr(kRmrRevision, identifier++, Rmr{0, spec.msi_windows}, maps);
    }
  }
  return b.finish();
}

Result<bool> host_canwbs(const Table& host, std::optional<std::size_t> index) {
  const auto rcs = host.of_type(NodeType::root_complex);
  if (rcs.empty()) return fail(ENOENT, "iort.canwbs", "the host IORT has no PCI root complex to carry CANWBS from");
  if (!index && rcs.size() > 1)
    return fail(EINVAL, "iort.canwbs",
                "the host IORT has {} root complexes; name the one the assigned devices sit behind (0-{})", rcs.size(),
                rcs.size() - 1);
  const std::size_t i = index.value_or(0);
  if (i >= rcs.size())
    return fail(ERANGE, "iort.canwbs", "host root complex {} does not exist; the host IORT has {} (0-{})", i,
                rcs.size(), rcs.size() - 1);
  const auto* rc = rcs[i]->as<RootComplex>();
  if (!rc)
    return fail(EINVAL, "iort.canwbs", "host root complex {} at {:#x} could not be decoded (run `vsmmu iort check`)",
                i, rcs[i]->offset);
  return rc->memory.canwbs();
}

}  // namespace vsmmu::acpi::iort
