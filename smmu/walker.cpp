// VMSAv8-64 table walks for the SMMU. Structure and fault priorities follow the Arm ARM pseudocode
// (J1.1.4: AArch64.S1Walk / S2Walk / S1Translate / S2Translate); configuration legality follows IHI 0070
// 5.2 (STE) and 5.4 (CD). Not modelled: TTB1 (the upper VA range faults as if EPD1=1), FEAT_LPA2 (DS),
// VMSAv8-32 LPAE and VMSAv9-128, the Contiguous hint (ignored, which the Arm ARM permits), S2PTW,
// stage-2 memory types and FWB.
#include "smmu/walker.hpp"

#include "base/try.hpp"

#include <algorithm>
#include <optional>

namespace vsmmu::smmu {

namespace {

// A hostile agent can keep rewriting a descriptor between our read and our compare-and-swap; after this
// many lost races the update is reported as an aborted walk (IHI 0070 5.4 IR0 lists F_WALK_EABT as a
// permitted outcome of a failed HTTU update).
constexpr unsigned kMaxUpdateAttempts = 16;

constexpr bool above(std::uint64_t addr, unsigned bits) { return bits < 64 && (addr >> bits) != 0; }

WalkFault make_fault(FaultType type, bool stage2, int level) {
  WalkFault f;
  f.type = type;
  f.stage2 = stage2;
  f.level = level;
  return f;
}

// Permissions of a leaf for one privilege, and whether a write must first mark it dirty.
struct StagePerms {
  Permissions perm;
  bool needs_dirty = false;
};

bool permitted(const Permissions& p, AccessType a) {
  // SMMU writes are always data (InD applies to reads); an instruction fetch needs only execute permission
  // at either stage (AArch64.S1CheckPermissions / S2CheckPermissions, IFETCH branch).
  if (a.write) return p.write;
  if (a.instruction) return p.execute;
  return p.read;
}

// IHI 0070 5.4 PS encodings: 0b111 behaves as 52 bits up to SMMUv3.3, then capped to the OAS; without
// FEAT_LPA2 only the 64KB granule can express 52 bits (AArch64.PhysicalAddressSize).
unsigned effective_ps(unsigned ps, unsigned oas_bits, Granule g) {
  unsigned bits = std::min(address_bits_from_ps(ps).value_or(52), oas_bits);
  return g == Granule::k64K ? bits : std::min(bits, 48U);
}

std::optional<ConfigError> check_granule(std::optional<Granule> g, const WalkCapabilities& caps, const char* field) {
  if (!g) return ConfigError{field, "reserved granule encoding"};
  const bool implemented = (*g == Granule::k4K && caps.gran4k) || (*g == Granule::k16K && caps.gran16k) ||
                           (*g == Granule::k64K && caps.gran64k);
  if (!implemented) return ConfigError{field, "granule not implemented by this SMMU (IDR5.GRAN*)"};
  return std::nullopt;
}

// TxSZ upper bound: 39, or 48 (4KB/16KB) / 47 (64KB) with IDR3.STT (IHI 0070 5.4 T0SZ, 5.2 S2T0SZ).
unsigned max_txsz(Granule g, const WalkCapabilities& caps) {
  if (!caps.stt) return 39;
  return g == Granule::k64K ? 47 : 48;
}

// A table base: legal only inside the effective output size, and inside 48 bits unless the granule is
// 64KB (IHI 0070 5.4 TTB0, 5.2 S2TTB); low bits below the start-level table's alignment are ignored.
std::expected<std::uint64_t, ConfigError> table_base(std::uint64_t ttb, unsigned oa_bits, Granule g, unsigned ia_bits,
                                                     int start_level, const char* field) {
  if (above(ttb, oa_bits)) return std::unexpected(ConfigError{field, "table address above the effective output size"});
  if (g != Granule::k64K && above(ttb, 48))
    return std::unexpected(ConfigError{field, "table address above 48 bits with a 4KB/16KB granule"});
  unsigned align = root_table_log2(g, ia_bits, start_level);
  if (oa_bits == 52) align = std::max(align, 6U);  // 64-byte minimum alignment for 52-bit output
  return ttb & ~low_bits(align);
}

}  // namespace

std::expected<Stage1Params, ConfigError> stage1_params(const Cd& cd, const WalkCapabilities& caps) {
  if (!cd.get(Cd::V)) return std::unexpected(ConfigError{"V", "the CD is not valid"});
  if (!cd.get(Cd::AA64))
    return std::unexpected(ConfigError{"AA64", "VMSAv8-32 LPAE stage-1 tables are not implemented (IDR0.TTF)"});
  if (cd.get(Cd::ENDI) && !(cd.get(Cd::EPD0) && cd.get(Cd::EPD1)))
    return std::unexpected(ConfigError{"ENDI", "big-endian translation tables are not implemented (IDR0.TTENDIAN)"});
  if (cd.get(Cd::HA) && !caps.httu_access)
    return std::unexpected(ConfigError{"HA", "hardware access flag update needs IDR0.HTTU >= 1"});
  if (cd.get(Cd::HD) && !caps.httu_dirty)
    return std::unexpected(ConfigError{"HD", "hardware dirty state update needs IDR0.HTTU == 2"});

  Stage1Params p;
  p.epd0 = cd.get(Cd::EPD0);
  p.affd = cd.get(Cd::AFFD);
  p.ha = cd.get(Cd::HA);
  p.hd = p.ha && cd.get(Cd::HD);  // {HD,HA} = 0b10 behaves as both 0 (IHI 0070 5.4 HA)
  p.wxn = cd.get(Cd::WXN);
  p.tbi = cd.get(Cd::TBI0);
  p.pan = cd.get(Cd::PAN);
  p.asid = cd.get(Cd::ASID);
  p.ips_bits = std::min(address_bits_from_ps(static_cast<unsigned>(cd.get(Cd::IPS))).value_or(52), caps.oas_bits);
  if (p.epd0) return p;  // T0SZ, TG0 and TTB0 are IGNORED (IHI 0070 5.4 EPD0)

  const auto g = granule_from_tg0(static_cast<unsigned>(cd.get(Cd::TG0)));
  if (auto e = check_granule(g, caps, "TG0")) return std::unexpected(*e);
  p.granule = *g;
  p.ips_bits = effective_ps(static_cast<unsigned>(cd.get(Cd::IPS)), caps.oas_bits, p.granule);
  p.lpa = p.granule == Granule::k64K && caps.oas_bits >= 52;

  const auto t0sz = static_cast<unsigned>(cd.get(Cd::T0SZ));
  const unsigned min_t0sz = caps.vax && p.granule == Granule::k64K ? 12 : 16;
  if (t0sz < min_t0sz || t0sz > max_txsz(p.granule, caps))
    return std::unexpected(ConfigError{"T0SZ", "input size out of the range this SMMU supports (IHI 0070 5.4)"});
  p.t0sz = t0sz;
  const unsigned ia_bits = 64 - t0sz;
  p.start_level = static_cast<unsigned>(s1_start_level(p.granule, ia_bits));

  VSMMU_TRY_ASSIGN(auto ttb, table_base(cd.get(Cd::TTB0), p.ips_bits, p.granule, ia_bits, static_cast<int>(p.start_level), "TTB0"));
  p.ttb = ttb;
  return p;
}

std::expected<Stage2Params, ConfigError> stage2_params(const Ste& ste, const WalkCapabilities& caps) {
  if (!ste.get(Ste::S2AA64))
    return std::unexpected(ConfigError{"S2AA64", "VMSAv8-32 LPAE stage-2 tables are not implemented (IDR0.TTF)"});
  if (ste.get(Ste::S2ENDI))
    return std::unexpected(ConfigError{"S2ENDI", "big-endian translation tables are not implemented (IDR0.TTENDIAN)"});
  if (ste.get(Ste::S2HA) && !caps.httu_access)
    return std::unexpected(ConfigError{"S2HA", "hardware access flag update needs IDR0.HTTU >= 1"});
  if (ste.get(Ste::S2HD) && !caps.httu_dirty)
    return std::unexpected(ConfigError{"S2HD", "hardware dirty state update needs IDR0.HTTU == 2"});

  const auto g = granule_from_tg0(static_cast<unsigned>(ste.get(Ste::S2TG)));
  if (auto e = check_granule(g, caps, "S2TG")) return std::unexpected(*e);

  Stage2Params p;
  p.granule = *g;
  p.affd = ste.get(Ste::S2AFFD);
  p.ha = ste.get(Ste::S2HA);
  p.hd = p.ha && ste.get(Ste::S2HD);  // {S2HA,S2HD} = 0b01 behaves as both 0 (IHI 0070 5.2 S2HA)
  p.xnx = caps.xnx;
  p.lpa = p.granule == Granule::k64K && caps.oas_bits >= 52;
  p.vmid = ste.get(Ste::S2VMID);
  p.ps_bits = effective_ps(static_cast<unsigned>(ste.get(Ste::S2PS)), caps.oas_bits, p.granule);

  // S2T0SZ range (IHI 0070 5.2): at least MAX(16, 64 - IAS), or MAX(12, 64 - IAS) with 64KB; IAS is the OAS
  // because this SMMU has no VMSAv8-32 stage 1 (IHI 0070 3.4).
  const auto t0sz = static_cast<unsigned>(ste.get(Ste::S2T0SZ));
  const unsigned min_t0sz = std::max(p.granule == Granule::k64K ? 12U : 16U, 64 - caps.oas_bits);
  if (t0sz < min_t0sz || t0sz > max_txsz(p.granule, caps))
    return std::unexpected(ConfigError{"S2T0SZ", "IPA size out of the range this SMMU supports (IHI 0070 5.2)"});
  p.t0sz = t0sz;
  const unsigned ia_bits = 64 - t0sz;

  // S2SL0: reserved or unusable encodings (AArch64.S2InvalidSL, PAMax being the OAS), then consistency with
  // S2T0SZ (AArch64.S2InconsistentSL): the start level must resolve at least one bit and at most one
  // level's bits plus 16 concatenated tables.
  const auto sl0 = static_cast<unsigned>(ste.get(Ste::S2SL0));
  const auto start = s2_start_level(p.granule, sl0);
  bool invalid = !start;
  if (start && *start == 3 && p.granule == Granule::k4K) invalid = !caps.stt;
  if (start && *start == 0) invalid = p.granule != Granule::k4K || caps.oas_bits < 44;  // 16KB level 0 needs DS
  if (start && *start == 1 && p.granule == Granule::k16K) invalid = caps.oas_bits < 42;
  if (start && *start == 1 && p.granule == Granule::k64K) invalid = caps.oas_bits < 44;
  if (invalid) return std::unexpected(ConfigError{"S2SL0", "start level not supported with this granule and OAS"});
  const unsigned resolved_below = level_shift(p.granule, *start);
  if (ia_bits < resolved_below + 1 || ia_bits > resolved_below + bits_per_level(p.granule) + 4)
    return std::unexpected(ConfigError{"S2SL0", "start level inconsistent with S2T0SZ (more than 16 concatenated "
                                                "tables, or nothing left to resolve)"});
  p.start_level = static_cast<unsigned>(*start);

  VSMMU_TRY_ASSIGN(auto ttb, table_base(ste.get(Ste::S2TTB), p.ps_bits, p.granule, ia_bits, *start, "S2TTB"));
  p.ttb = ttb;
  return p;
}

// One stage's walk, decoded once from its params.
struct Walker::Regime {
  bool stage2 = false;
  Granule granule = Granule::k4K;
  unsigned ia_bits = 48;
  unsigned oa_bits = 48;
  int start_level = 0;
  std::uint64_t ttb = 0;
  bool lpa = false;
  bool affd = false;
  bool ha = false;
  const Stage1Params* s1 = nullptr;
  const Stage2Params* s2 = nullptr;

  // The fields both stages' params name alike.
  template <class Params>
  static Regime of(const Params& p, unsigned oa_bits) {
    Regime r;
    r.granule = p.granule;
    r.ia_bits = 64 - p.t0sz;
    r.oa_bits = oa_bits;
    r.start_level = static_cast<int>(p.start_level);
    r.ttb = p.ttb;
    r.lpa = p.lpa;
    r.affd = p.affd;
    r.ha = p.ha;
    return r;
  }
};

// The leaf a walk reached, where it lives, and the stage-1 hierarchical controls collected on the way.
struct Walker::LeafRef {
  std::uint64_t descriptor = 0;
  std::uint64_t pa = 0;
  std::uint64_t ia_of_descriptor = 0;  // the address the stage walks in: IPA for nested stage 1
  int level = 0;
  bool no_unprivileged = false;        // APTable[0]
  bool read_only = false;              // APTable[1]
  bool uxn_table = false;
  bool pxn_table = false;
};

namespace {

// Stage-1 leaf permissions, EL1&0 regime (AArch64.S1DirectBasePermissions): DBM with HD makes AP[2]
// effectively 0; APTable, UXNTable and PXNTable restrict; EL0-writable is never privileged-executable;
// PAN removes privileged data access to EL0-accessible pages; WXN removes execute from writable pages.
template <class Leaf>
StagePerms s1_permissions(const Leaf& leaf, const Stage1Params& p, bool privileged) {
  const std::uint64_t d = leaf.descriptor;
  const bool dbm = p.hd && Descriptor::DBM.extract(d);
  const bool clean = Descriptor::AP2.extract(d);
  const bool read_only = clean && !dbm;
  const bool ap1 = Descriptor::AP1.extract(d);
  bool pr = true;
  bool pw = !read_only;
  bool ur = ap1;
  bool uw = ap1 && !read_only;
  if (leaf.no_unprivileged) ur = uw = false;
  if (leaf.read_only) pw = uw = false;
  const bool px = !(Descriptor::PXN.extract(d) || leaf.pxn_table || uw);
  const bool ux = !(Descriptor::UXN.extract(d) || leaf.uxn_table);
  if (p.pan && (ur || uw)) pr = pw = false;
  StagePerms s;
  s.perm = privileged ? Permissions{pr, pw, px} : Permissions{ur, uw, ux};
  if (p.wxn && s.perm.write) s.perm.execute = false;
  s.needs_dirty = s.perm.write && clean;
  return s;
}

// Stage-2 leaf permissions (AArch64.S2DirectBasePermissions): S2AP[0] read, S2AP[1] write or DBM with HD;
// XN[1:0] with FEAT_XNX, else XN alone.
StagePerms s2_permissions(std::uint64_t d, const Stage2Params& p, bool privileged) {
  const bool dbm = p.hd && Descriptor::DBM.extract(d);
  const bool clean = !Descriptor::S2AP_W.extract(d);
  StagePerms s;
  s.perm.read = Descriptor::S2AP_R.extract(d);
  s.perm.write = !clean || dbm;
  const auto xn = static_cast<unsigned>(Descriptor::S2XN.extract(d));
  bool px = (xn & 2) == 0;
  bool ux = px;
  if (p.xnx) {
    px = xn == 0 || xn == 3;
    ux = xn == 0 || xn == 1;
  }
  s.perm.execute = privileged ? px : ux;
  s.needs_dirty = clean && dbm;
  return s;
}

}  // namespace

std::expected<Walker::LeafRef, WalkFault> Walker::walk_levels(const Regime& r, std::uint64_t ia,
                                                              const Stage2Params* tables_s2) {
  LeafRef leaf;
  int level = r.start_level;
  std::uint64_t table = r.ttb;
  for (;;) {
    const unsigned shift = level_shift(r.granule, level);
    // The start level indexes every remaining input bit (concatenated tables at stage 2).
    const unsigned width = level == r.start_level ? r.ia_bits - shift : bits_per_level(r.granule);
    const std::uint64_t desc_ia = table + ((ia >> shift) & low_bits(width)) * 8;
    std::uint64_t desc_pa = desc_ia;
    if (tables_s2) {
      // Nested: the descriptor's address is an IPA, read through stage 2 (a table walk, TTRnW=1).
      auto t = stage2(*tables_s2, desc_ia, AccessType{});
      if (!t) {
        WalkFault f = t.error();
        f.on_table_walk = true;
        return std::unexpected(f);
      }
      desc_pa = t->output;
    }
    ++descriptor_reads_;
    const auto fetched = mem_.read64(desc_pa);
    if (!fetched) {
      WalkFault f = make_fault(FaultType::walk_eabt, r.stage2, level);
      f.fetch_address = desc_pa;
      return std::unexpected(f);
    }
    const std::uint64_t d = *fetched;
    if (!Descriptor::Valid.extract(d)) return std::unexpected(make_fault(FaultType::translation, r.stage2, level));
    const bool table_bit = Descriptor::Table.extract(d);
    if (level < kFinalLevel && table_bit) {
      const std::uint64_t next = Descriptor::output_address(d, granule_shift(r.granule), r.lpa);
      if (above(next, r.oa_bits)) return std::unexpected(make_fault(FaultType::address_size, r.stage2, level));
      if (!r.stage2) {
        const auto ap_table = static_cast<unsigned>(Descriptor::APTable.extract(d));
        leaf.no_unprivileged = leaf.no_unprivileged || (ap_table & 1) != 0;
        leaf.read_only = leaf.read_only || (ap_table & 2) != 0;
        leaf.uxn_table = leaf.uxn_table || Descriptor::UXNTable.extract(d);
        leaf.pxn_table = leaf.pxn_table || Descriptor::PXNTable.extract(d);
      }
      table = next;
      ++level;
      continue;
    }
    // Bit 1 clear at level 3, or a block where the granule has none, is reserved: translation fault
    // (AArch64.DecodeDescriptorType).
    if (level == kFinalLevel ? !table_bit : !block_allowed(r.granule, level, r.lpa))
      return std::unexpected(make_fault(FaultType::translation, r.stage2, level));
    leaf.descriptor = d;
    leaf.pa = desc_pa;
    leaf.ia_of_descriptor = desc_ia;
    leaf.level = level;
    return leaf;
  }
}

std::expected<Translation, WalkFault> Walker::translate(const Regime& r, std::uint64_t ia, AccessType access,
                                                        const Stage2Params* tables_s2) {
  for (unsigned attempt = 1;; ++attempt) {
    VSMMU_TRY_ASSIGN(auto leaf, walk_levels(r, ia, tables_s2));
    const std::uint64_t d = leaf.descriptor;
    const int level = leaf.level;
    const unsigned shift = level_shift(r.granule, level);

    // Leaf checks in the Arm ARM's order: output address size, access flag, then permission.
    const std::uint64_t base = Descriptor::output_address(d, shift, r.lpa);
    if (above(base, r.oa_bits)) return std::unexpected(make_fault(FaultType::address_size, r.stage2, level));
    const bool af = Descriptor::AF.extract(d);
    // AFFD treats AF as 1 unless HA is set, which makes it IGNORED (IHI 0070 5.4 AFFD, 5.2 S2AFFD).
    if (!af && !r.ha && !r.affd) return std::unexpected(make_fault(FaultType::access, r.stage2, level));
    const StagePerms sp = r.stage2 ? s2_permissions(d, *r.s2, access.privileged)
                                   : s1_permissions(leaf, *r.s1, access.privileged);
    // No hardware update for an access that faults on permission: setting AF then is CONSTRAINED
    // UNPREDICTABLE (AArch64.SettingAccessFlagPermitted) and dirty state is never set.
    if (!permitted(sp.perm, access)) return std::unexpected(make_fault(FaultType::permission, r.stage2, level));

    std::uint64_t updated = d;
    if (!af && r.ha) updated = Descriptor::AF.insert(updated, true);
    const bool dirtying = access.write && sp.needs_dirty;
    if (dirtying) {
      updated = r.stage2 ? Descriptor::S2AP_W.insert(updated, true) : Descriptor::AP2.insert(updated, false);
    }
    std::uint64_t desc_pa = leaf.pa;
    if (updated != d) {
      if (tables_s2) {
        // The update is a write to the stage-1 descriptor through stage 2: it needs stage-2 write
        // permission (and may itself dirty the stage-2 page) (AArch64.S1Translate, TTW update access).
        AccessType update_access;
        update_access.write = true;
        auto t = stage2(*tables_s2, leaf.ia_of_descriptor, update_access);
        if (!t) {
          WalkFault f = t.error();
          f.on_table_walk = true;
          f.table_write = true;
          return std::unexpected(f);
        }
        desc_pa = t->output;
      }
      const auto swapped = mem_.compare_exchange64(desc_pa, d, updated);
      if (!swapped || (!*swapped && attempt >= kMaxUpdateAttempts)) {
        WalkFault f = make_fault(FaultType::walk_eabt, r.stage2, level);
        f.fetch_address = desc_pa;
        return std::unexpected(f);
      }
      if (!*swapped) continue;  // the descriptor changed under us: restart the walk (AArch64.S1Translate)
    }

    Translation t;
    t.output = base | (ia & low_bits(shift));
    t.size_log2 = shift;
    t.level = level;
    t.perm = sp.perm;
    t.write_needs_dirty = sp.needs_dirty && !dirtying;
    t.descriptor_address = desc_pa;
    t.descriptor = updated;
    return t;
  }
}

std::expected<Translation, WalkFault> Walker::stage2(const Stage2Params& s2, std::uint64_t ipa, AccessType access) {
  Regime r = Regime::of(s2, s2.ps_bits);
  r.stage2 = true;
  r.s2 = &s2;
  // An IPA above the stage-2 input size: stage-2 translation fault, level 0 (AArch64.S2Translate).
  std::expected<Translation, WalkFault> t = std::unexpected(make_fault(FaultType::translation, true, 0));
  if (!above(ipa, r.ia_bits)) t = translate(r, ipa, access, nullptr);
  if (!t) {
    WalkFault f = t.error();
    f.stage2 = true;
    f.ipa = ipa;
    return std::unexpected(f);
  }
  return t;
}

std::expected<Translation, WalkFault> Walker::stage1(const Stage1Params& s1, std::uint64_t va, AccessType access,
                                                     const Stage2Params* s2) {
  // EPD0 and a VA outside TTB0's range are stage-1 translation faults at level 0 (AArch64.S1Walk,
  // AArch64.VAIsOutOfRange; IHI 0070 3.4). With TBI0 the top byte does not take part in the check.
  const unsigned ia_bits = 64 - s1.t0sz;
  const std::uint64_t checked = s1.tbi ? va & low_bits(56) : va;
  if (s1.epd0 || above(checked, ia_bits)) return std::unexpected(make_fault(FaultType::translation, false, 0));
  Regime r = Regime::of(s1, s1.ips_bits);
  r.s1 = &s1;
  return translate(r, checked, access, s2);
}

std::expected<Translation, WalkFault> Walker::nested(const Stage1Params& s1, const Stage2Params& s2, std::uint64_t va,
                                                     AccessType access) {
  auto first = stage1(s1, va, access, &s2);
  if (!first) return first;
  VSMMU_TRY_ASSIGN(auto second, stage2(s2, first->output, access));
  Translation t = *first;
  t.ipa = first->output;
  t.output = second.output;
  t.size_log2 = std::min(first->size_log2, second.size_log2);
  t.perm.read = first->perm.read && second.perm.read;
  t.perm.write = first->perm.write && second.perm.write;
  t.perm.execute = first->perm.execute && second.perm.execute;
  t.write_needs_dirty = first->write_needs_dirty || second.write_needs_dirty;
  return t;
}

}  // namespace vsmmu::smmu
