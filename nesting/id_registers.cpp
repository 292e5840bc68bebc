#include "nesting/id_registers.hpp"
#include "nesting/stall_table.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "smmu/id_features.hpp"

namespace vsmmu::nesting {

using namespace smmu;

namespace {

constexpr unsigned kMaxQueueLog2 = 19;  // IHI 0070 6.3.2: CMDQS/EVENTQS at most 19
constexpr unsigned kAutoSidBits = 16;   // a PCI segment's RID space

// Collects one line per incompatibility, so a VMM author sees all of them at once.
class Refusals {
 public:
  template <class... Args>
  void add(fmt::format_string<Args...> f, Args&&... args) {
    lines_.push_back(fmt::format(f, std::forward<Args>(args)...));
  }
  bool empty() const { return lines_.empty(); }
  std::string joined() const { return fmt::format("{}", fmt::join(lines_, "; ")); }

 private:
  std::vector<std::string> lines_;
};

// A wish that must not exceed what the host has (SIDSIZE, SSIDSIZE, RIL).
template <class T>
T at_most(Refusals& r, const char* field, std::optional<T> wish, T host_value, T auto_value) {
  if (!wish) return std::min(auto_value, host_value);
  if (*wish > host_value)
    r.add("{} {} asked, the physical SMMU has {}", field, static_cast<unsigned>(*wish), static_cast<unsigned>(host_value));
  return *wish;
}

// A wish that must equal the host's (ST_LEVEL, granules): the guest's tables are walked by the physical SMMU.
template <class T>
T equal_to(Refusals& r, const char* field, std::optional<T> wish, T host_value) {
  if (wish && *wish != host_value)
    r.add("{} {} asked, the physical SMMU has {} (must be equal)", field, static_cast<unsigned>(*wish),
          static_cast<unsigned>(host_value));
  return host_value;
}

// The smallest architectural OAS (IHI 0070 6.3.6) covering `ipa_bits`; 52 above.
unsigned smallest_oas_covering(unsigned ipa_bits) {
  for (unsigned bits : {32U, 36U, 40U, 42U, 44U, 48U})
    if (bits >= ipa_bits) return bits;
  return 52;
}

bool endian_supported(TtEndian host, TtEndian guest) {
  if (host == TtEndian::mixed) return guest != TtEndian::reserved;
  return guest == host;  // a single-endian host cannot walk the other endianness, nor promise "mixed"
}

}  // namespace

Result<GuestIdRegisters> derive_id_registers(const host::HwInfo& hw, const VsmmuWishes& w, const std::string& what) {
  if (hw.type != host::uapi::kHwInfoTypeArmSmmuv3)
    return fail(EOPNOTSUPP, "vsmmu.id", "{}: the host IOMMU is not an ARM SMMUv3 (hw_info type {})", what, hw.type);
  const IdRegisters host_ids = hw.id_registers();
  const IdFeatures h = IdFeatures::of(host_ids);
  if (!h.s1p || !h.s2p)
    return fail(EOPNOTSUPP, "vsmmu.id", "{}: the physical SMMU lacks stage {} translation (IDR0 {:#x}); nesting needs both",
                what, h.s1p ? 2 : 1, hw.idr[0]);
  if (!h.aarch64_tables())
    return fail(EOPNOTSUPP, "vsmmu.id", "{}: the physical SMMU cannot walk AArch64 tables (IDR0.TTF {})", what,
                static_cast<unsigned>(h.ttf));

  Refusals r;
  GuestIdRegisters g;

  // IDR0: stage 1 only, AArch64 tables, coherent walks; no HTTU/BTM for nesting (include/uapi/linux/iommufd.h,
  // struct iommu_hw_info_arm_smmuv3).
  // ATS is the SMMU's (IDR0.ATS); auto leaves it off when the device the registers derive from cannot use it
  // (IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED). That flag is a device's, not the SMMU's, so it refuses nothing: the
  // guest enables ATS per device through the PCI ATS capability the VMM shows it (to be hidden for such a
  // device), and the kernel never enables ATS for it whatever the vSTE's EATS says (arm-smmu-v3.c,
  // arm_smmu_attach_prepare: ats_enabled needs arm_smmu_ats_supported). So such a device may join a vSMMU
  // whose guest sees ATS.
  const bool ats_unusable = (hw.capabilities & host::uapi::kCapPciAtsNotSupported) != 0;
  const bool ats = w.ats.value_or(h.ats && !ats_unusable);
  if (ats && !h.ats) r.add("ATS 1 asked, the physical SMMU has 0 (IDR0.ATS)");
  const StLevel st_level = equal_to(r, "ST_LEVEL", w.st_level, h.st_level);
  TtEndian endian = w.tt_endian.value_or(h.ttendian == TtEndian::mixed ? TtEndian::little : h.ttendian);
  if (!endian_supported(h.ttendian, endian))
    r.add("TTENDIAN {} asked, the physical SMMU walks {} tables", static_cast<unsigned>(endian),
          static_cast<unsigned>(h.ttendian));
  // COHACC: the vSMMU's own accesses (queues, tables, MSIs into guest RAM) are the host CPU's, coherent with
  // the guest's; the device's nested table walks are coherent because the kernel nests only with S2FWB or a
  // CANWBS root complex, and the uAPI assumes COHACC for nesting (include/uapi/linux/iommufd.h). So COHACC is
  // always given, and with it the MSI wish: Linux polls CMD_SYNC completions in memory (MSIPOLL) only on a
  // coherent SMMU (arm_smmu_device_hw_probe). Were COHACC ever not given, MSI would be refused below.
  const bool cohacc = true;
  const bool msi = w.msi.value_or(w.msi_delivery);
  if (msi && !cohacc)
    r.add("MSI asked on a non-coherent vSMMU (IDR0.COHACC = 0): the guest could not poll CMD_SYNC completions in memory");
  // Stalls (IHI 0070 3.12.2): the guest's model is the host's, since the physical SMMU stalls the transactions.
  const bool host_stalls = h.stall_model == StallModel::stall_and_terminate || h.stall_model == StallModel::stall_forced;
  const bool stall = w.stall.value_or(kAutoStall && host_stalls);
  if (stall && !host_stalls)
    r.add("stalls asked, the physical SMMU terminates faulting transactions (IDR0.STALL_MODEL {})",
          static_cast<unsigned>(h.stall_model));
  const StallModel stall_model = stall && host_stalls ? h.stall_model : StallModel::terminate;
  g.idr0.set(Idr0::S1P, true)
      .set(Idr0::TTF, Ttf::aarch64)
      .set(Idr0::COHACC, cohacc)
      .set(Idr0::MSI, msi)
      .set(Idr0::ATS, ats)
      .set(Idr0::ASID16, h.asid16)
      .set(Idr0::CD2L, h.cd2l)
      .set(Idr0::TTENDIAN, endian)
      .set(Idr0::STALL_MODEL, stall_model)
      .set(Idr0::TERM_MODEL, h.term_model)
      .set(Idr0::ST_LEVEL, st_level);

  // IDR1: stream and substream widths, queue sizes.
  const unsigned sid_bits = at_most<unsigned>(r, "SIDSIZE", w.sid_bits, h.sidsize, kAutoSidBits);
  const unsigned max_ssid_bits = h.cd2l ? kMaxSsidBits : kMaxLinearSsidBits;
  const unsigned ssid_bits = at_most<unsigned>(r, "SSIDSIZE", w.ssid_bits, h.ssidsize, max_ssid_bits);
  if (ssid_bits > kMaxSsidBits)
    r.add("SSIDSIZE {} asked: the architecture allows at most {} SubstreamID bits", ssid_bits, kMaxSsidBits);
  else if (!h.cd2l && ssid_bits > kMaxLinearSsidBits)
    r.add("SSIDSIZE {} asked without 2-level CD tables (IDR0.CD2L=0): a linear CD table that large is not usable "
          "(at most {})", ssid_bits, kMaxLinearSsidBits);
  g.idr1.set(Idr1::SIDSIZE, sid_bits)
      .set(Idr1::SSIDSIZE, ssid_bits)
      .set(Idr1::CMDQS, std::min(w.cmdq_log2, kMaxQueueLog2))
      .set(Idr1::EVENTQS, std::min(w.eventq_log2, kMaxQueueLog2));

  // IDR3: range invalidation and break-before-make level pass through; no FWB (no guest stage 2).
  g.idr3.set(Idr3::RIL, at_most(r, "RIL", w.ril, h.ril, true)).set(Idr3::BBML, h.bbml);

  // IDR5: the output size is the guest's IPA size (the vSMMU is stage 1 only); granules equal to the host's, VAX
  // passes through. The physical SMMU's OAS bounds both: its stage 2 maps the guest's physical addresses.
  const unsigned host_oas = h.oas_bits();
  unsigned oas = std::min(host_oas, kMaxAutoOasBits);
  if (w.oas_bits) {
    oas = *w.oas_bits;
    if (oas > host_oas) r.add("OAS {} asked, the physical SMMU has {}", oas, host_oas);
  } else if (w.ipa_bits) {
    oas = smallest_oas_covering(*w.ipa_bits);
    if (*w.ipa_bits > 52)
      r.add("IPA {} bits asked: the largest architectural OAS is 52 bits", *w.ipa_bits);
    else if (oas > host_oas)
      r.add("IPA {} bits asked, the physical SMMU's OAS is {} bits: its stage 2 cannot map guest physical addresses "
            "that wide; ask for at most {} bits or leave the IPA size on auto", *w.ipa_bits, host_oas, host_oas);
  }
  const unsigned ipa_bits = w.ipa_bits.value_or(oas);
  const auto oas_enc = oas_for_bits(oas);
  if (!oas_enc) r.add("OAS {} bits is not an architectural size (32, 36, 40, 42, 44, 48, 52)", oas);
  if (oas < ipa_bits && ipa_bits <= 52)
    r.add("OAS {} bits cannot reach the guest's {}-bit physical address space", oas, ipa_bits);
  g.idr5.set(Idr5::OAS, oas_enc.value_or(Oas::bits48))
      .set(Idr5::GRAN4K, equal_to(r, "GRAN4K", w.gran4k, h.gran4k))
      .set(Idr5::GRAN16K, equal_to(r, "GRAN16K", w.gran16k, h.gran16k))
      .set(Idr5::GRAN64K, equal_to(r, "GRAN64K", w.gran64k, h.gran64k))
      .set(Idr5::VAX, h.vax);
  // STALL_MAX: the outstanding stalls the vSMMU keeps (nesting/stall_table.hpp), no more than the physical
  // SMMU's own bound when it reports one (IHI 0070 6.3.6); 0 without stalls.
  if (stall_model != StallModel::terminate) {
    const std::uint32_t host_max = host_ids.idr5.get(Idr5::STALL_MAX);
    g.idr5.set(Idr5::STALL_MAX,
               static_cast<std::uint16_t>(host_max != 0 ? std::min(host_max, kVsmmuStallMax) : kVsmmuStallMax));
  }

  // IIDR/AIDR: the physical SMMU's, so the guest applies the same errata workarounds.
  g.iidr = host_ids.iidr;
  g.aidr = host_ids.aidr;

  if (!r.empty())
    return fail(EINVAL, "vsmmu.id", "{}: the physical SMMU cannot provide what the VMM asked: {}", what, r.joined());
  return g;
}

std::optional<std::string> first_difference(const GuestIdRegisters& a, const GuestIdRegisters& b) {
  const std::array<std::pair<const char*, std::pair<std::uint32_t, std::uint32_t>>, 8> regs{{
      {"IDR0", {a.idr0.value(), b.idr0.value()}}, {"IDR1", {a.idr1.value(), b.idr1.value()}},
      {"IDR2", {a.idr2.value(), b.idr2.value()}}, {"IDR3", {a.idr3.value(), b.idr3.value()}},
      {"IDR4", {a.idr4.value(), b.idr4.value()}}, {"IDR5", {a.idr5.value(), b.idr5.value()}},
      {"IIDR", {a.iidr.value(), b.iidr.value()}}, {"AIDR", {a.aidr.value(), b.aidr.value()}},
  }};
  for (const auto& [name, v] : regs)
    if (v.first != v.second) return fmt::format("{} would be {:#010x} here but the guest sees {:#010x}", name, v.second, v.first);
  return std::nullopt;
}

VsmmuWishes pinned(const VsmmuWishes& w, const GuestIdRegisters& g) {
  const IdFeatures f = IdFeatures::of(g);
  VsmmuWishes p = w;
  p.oas_bits = f.oas_bits();
  p.sid_bits = f.sidsize;
  p.ssid_bits = f.ssidsize;
  p.ril = f.ril;
  p.ats = f.ats;
  p.st_level = f.st_level;
  p.tt_endian = f.ttendian;
  p.gran4k = f.gran4k;
  p.gran16k = f.gran16k;
  p.gran64k = f.gran64k;
  p.msi = f.msi;
  p.stall = f.stall_model != StallModel::terminate;
  return p;
}

}  // namespace vsmmu::nesting
