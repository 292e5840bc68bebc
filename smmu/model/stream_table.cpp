// Finding a transaction's configuration: the STE through a linear or 2-level stream table (IHI 0070 3.3),
// the CD through a linear or 2-level CD table (3.4), with the checks of 5.2 and 5.4 and the events of 7.3.
// In nested configurations every CD-table address is an IPA translated by stage 2 (3.4.3).
#include <algorithm>

#include "base/log.hpp"
#include "base/try.hpp"
#include "smmu/model/smmu_model.hpp"
#include "smmu/stream_table.hpp"

namespace vsmmu::smmu::model {
namespace {

constexpr std::uint64_t kCdBytes = Cd::bytes;

constexpr std::uint64_t align_down(std::uint64_t a, unsigned log2) {
  return log2 >= 64 ? 0 : a & ~((1ULL << log2) - 1);
}

}  // namespace

Event SmmuModel::event_for(EventId id, const Txn& t) const {
  Event e;
  e.set(Event::ID, id).set(Event::SID, t.stream.sid);
  if (t.stream.ssid) e.set(Event::SSV, true).set(Event::SSID, *t.stream.ssid);
  e.set(Event::InputAddr, t.iova)
      .set(Event::RnW, !t.write)
      .set(Event::InD, t.stream.attrs.instruction)
      .set(Event::PnU, t.stream.attrs.privileged);
  return e;
}

std::expected<SmmuModel::Route, SmmuModel::Fault> SmmuModel::route(const Txn& t) {
  VSMMU_TRY_ASSIGN(auto stream, stream_entry(t));
  Route r;
  r.stream = stream;
  const auto config = (stream)->config;
  const auto bad_substream = [&] {
    return std::unexpected(Fault{DmaOutcome::aborted, event_for(EventId::C_BAD_SUBSTREAMID, t)});
  };
  // Config == abort terminates the transaction without an event (IHI 0070 5.2 Config).
  if (config == StreamConfig::abort) return std::unexpected(Fault{DmaOutcome::aborted, std::nullopt, false});
  // A SubstreamID needs stage 1 (IHI 0070 3.9.2).
  if (!has_stage1(config)) {
    if (t.stream.ssid) return bad_substream();
    r.stage2 = has_stage2(config);
    return r;
  }
  r.stage2 = has_stage2(config);
  const auto& ste = (stream)->ste;
  const std::uint64_t cdmax = ste.get(Ste::S1CDMax);
  std::uint32_t cd_index = 0;
  if (cdmax == 0) {
    // Substreams disabled: one CD, and a transaction with a SubstreamID is ILLEGAL (IHI 0070 5.2 S1CDMax).
    if (t.stream.ssid) return bad_substream();
  } else if (!t.stream.ssid) {
    // Substreams enabled: STE.S1DSS says what a transaction without one does (IHI 0070 5.2 S1DSS).
    switch (ste.get(Ste::S1DSS)) {
      case S1Dss::terminate:
        return std::unexpected(Fault{DmaOutcome::aborted, event_for(EventId::F_STREAM_DISABLED, t)});
      case S1Dss::bypass: return r;  // stage 1 bypassed, stage 2 (if any) applies
      default: break;                // substream0 (reserved was refused as C_BAD_STE)
    }
  } else {
    const std::uint32_t ssid = *t.stream.ssid;
    // Beyond the CD table, or SubstreamID 0 when S1DSS reserves CD 0 for untagged traffic.
    if (ssid >> cdmax != 0 || (ste.get(Ste::S1DSS) == S1Dss::substream0 && ssid == 0)) return bad_substream();
    cd_index = ssid;
  }
  VSMMU_TRY_ASSIGN(auto ctx, context_entry(t, *stream, cd_index));
  r.context = ctx;
  return r;
}

std::expected<const StreamEntry*, SmmuModel::Fault> SmmuModel::stream_entry(const Txn& t) {
  if (const auto* cached = config_cache_.stream(t.stream.sid)) {
    ++counters_.config_hits;
    return cached;
  }
  VSMMU_TRY_ASSIGN(auto addr, ste_address(t));
  ++counters_.ste_fetches;
  auto ste = mem_.read_record<Ste>(addr);
  if (!ste) {
    Event e = event_for(EventId::F_STE_FETCH, t);
    e.set(Event::FetchAddr, addr);
    return std::unexpected(Fault{DmaOutcome::aborted, e});
  }
  VSMMU_TRY_ASSIGN(auto entry, decode_ste(t, *ste));
  config_cache_.insert_stream(t.stream.sid, entry);
  if (const auto* kept = config_cache_.stream(t.stream.sid)) return kept;
  uncached_stream_ = entry;
  return &uncached_stream_;
}

// Where the STE of t's StreamID lives (IHI 0070 3.3).
std::expected<std::uint64_t, SmmuModel::Fault> SmmuModel::ste_address(const Txn& t) {
  auto loc = locate_ste(mem_, regs_.ids(), regs_.strtab_base(), regs_.strtab_base_cfg(), t.stream.sid);
  if (loc) {
    if (loc->read_l1) ++counters_.ste_fetches;
    return loc->address;
  }
  if (loc.error().kind == SteLookupFailure::Kind::fetch_abort) {
    ++counters_.ste_fetches;
    Event e = event_for(EventId::F_STE_FETCH, t);
    e.set(Event::FetchAddr, loc.error().fetch_address);
    return std::unexpected(Fault{DmaOutcome::aborted, e});
  }
  // C_BAD_STREAMID is recorded only with CR2.RECINVSID (IHI 0070 6.3.12).
  return std::unexpected(
      Fault{DmaOutcome::aborted, event_for(EventId::C_BAD_STREAMID, t), regs_.cr2().get(Cr2::RECINVSID)});
}

// STE legality (IHI 0070 5.2 "STE validity"): anything ILLEGAL gives C_BAD_STE.
std::expected<StreamEntry, SmmuModel::Fault> SmmuModel::decode_ste(const Txn& t, const Ste& ste) const {
  const auto bad = [&](const char* field, const char* reason) {
    log::debug("smmu.model", "SID {:#x}: C_BAD_STE: {}: {}", t.stream.sid, field, reason);
    return std::unexpected(Fault{DmaOutcome::aborted, event_for(EventId::C_BAD_STE, t)});
  };
  if (!ste.get(Ste::V)) return bad("V", "the STE is not valid");
  StreamEntry e;
  e.ste = ste;
  e.config = ste.get(Ste::Config);
  if (is_reserved(e.config)) return bad("Config", "reserved value");
  if (has_stage1(e.config) && !config_.idr0.get(Idr0::S1P)) return bad("Config", "stage 1 is not implemented");
  if (has_stage2(e.config) && !config_.idr0.get(Idr0::S2P)) return bad("Config", "stage 2 is not implemented");

  const auto stall_model = config_.idr0.get(Idr0::STALL_MODEL);
  if (has_stage1(e.config)) {
    // S1STALLD asks to disable stalls an SMMU that is not "stall and terminate" cannot choose (IHI 0070 5.5).
    if (stall_model != StallModel::stall_and_terminate && ste.get(Ste::S1STALLD))
      return bad("S1STALLD", "set, but IDR0.STALL_MODEL is not stall-and-terminate (0b00)");
    const std::uint64_t cdmax = ste.get(Ste::S1CDMax);
    if (cdmax > config_.idr1.get(Idr1::SSIDSIZE)) return bad("S1CDMax", "more SubstreamID bits than IDR1.SSIDSIZE");
    if (cdmax != 0) {
      // S1Fmt and S1DSS matter only with substreams (IHI 0070 5.2 S1Fmt).
      const auto fmt = ste.get(Ste::S1Fmt);
      if (fmt == CdTableFormat::reserved) return bad("S1Fmt", "reserved value");
      if (fmt != CdTableFormat::linear && !config_.idr0.get(Idr0::CD2L))
        return bad("S1Fmt", "2-level CD tables are not implemented (IDR0.CD2L)");
      if (ste.get(Ste::S1DSS) == S1Dss::reserved) return bad("S1DSS", "reserved value");
    }
    // Without stage 2 the CD table pointer is a PA and must be inside the OAS; nested, stage 2 checks it.
    if (!has_stage2(e.config) && caps_.oas_bits < 64 && ste.get(Ste::S1ContextPtr) >> caps_.oas_bits != 0)
      return bad("S1ContextPtr", "address above the OAS");
  }
  if (has_stage2(e.config)) {
    auto s2 = stage2_params(ste, caps_);
    if (!s2) return bad(s2.error().field, s2.error().reason);
    // Without 16-bit VMIDs, VMID[15:8] is RES0 and ignored (IHI 0070 5.2 S2VMID).
    if (!config_.idr0.get(Idr0::VMID16)) s2->vmid = static_cast<std::uint8_t>(s2->vmid);
    e.s2 = *s2;
    // STE.S2FWB takes effect only where the SMMU implements it (IHI 0070 5.2, IDR3.FWB).
    e.s2fwb = ste.get(Ste::S2FWB) && config_.idr3.get(Idr3::FWB);
    e.s2_record = ste.get(Ste::S2R);
    // S2S must match a terminate-only or a stall-forced SMMU (IHI 0070 5.5).
    if (stall_model == StallModel::terminate && ste.get(Ste::S2S))
      return bad("S2S", "set, but IDR0.STALL_MODEL is terminate-only (0b01)");
    if (stall_model == StallModel::stall_forced && !ste.get(Ste::S2S))
      return bad("S2S", "clear, but IDR0.STALL_MODEL forces stalls (0b10)");
    e.s2_stall = ste.get(Ste::S2S);
  }
  return e;
}

std::expected<const ContextEntry*, SmmuModel::Fault> SmmuModel::context_entry(const Txn& t, const StreamEntry& s,
                                                                              std::uint32_t ssid) {
  if (const auto* cached = config_cache_.context(t.stream.sid, ssid)) {
    ++counters_.config_hits;
    return cached;
  }
  VSMMU_TRY_ASSIGN(auto addr, cd_address(t, s, ssid));
  ++counters_.cd_fetches;
  auto cd = mem_.read_record<Cd>(addr);
  if (!cd) {
    Event e = event_for(EventId::F_CD_FETCH, t);
    e.set(Event::FetchAddr, addr);
    return std::unexpected(Fault{DmaOutcome::aborted, e});
  }
  VSMMU_TRY_ASSIGN(auto entry, decode_cd(t, *cd, s));
  config_cache_.insert_context(t.stream.sid, ssid, entry);
  if (const auto* kept = config_cache_.context(t.stream.sid, ssid)) return kept;
  uncached_context_ = entry;
  return &uncached_context_;
}

// The PA of CD `ssid` (IHI 0070 3.4.1, 3.4.2, 5.3).
std::expected<std::uint64_t, SmmuModel::Fault> SmmuModel::cd_address(const Txn& t, const StreamEntry& s,
                                                                     std::uint32_t ssid) {
  const Ste& ste = s.ste;
  const std::uint64_t ptr = ste.get(Ste::S1ContextPtr);
  const auto fmt = ste.get(Ste::S1CDMax) == 0 ? CdTableFormat::linear : ste.get(Ste::S1Fmt);
  if (fmt == CdTableFormat::linear) return fetch_address(t, s, ptr + ssid * kCdBytes, EventClass::CD);

  // 2-level: a level-2 table holds 4KB or 64KB of CDs, indexed by the low SubstreamID bits.
  const unsigned split = fmt == CdTableFormat::two_level_4k ? 6 : 10;
  VSMMU_TRY_ASSIGN(auto l1_pa, fetch_address(t, s, ptr + (ssid >> split) * CdTableL1::bytes, EventClass::CD));
  ++counters_.cd_fetches;
  auto l1 = mem_.read_record<CdTableL1>(l1_pa);
  if (!l1) {
    Event e = event_for(EventId::F_CD_FETCH, t);
    e.set(Event::FetchAddr, l1_pa);
    return std::unexpected(Fault{DmaOutcome::aborted, e});
  }
  // An invalid level-1 descriptor makes the SubstreamID unusable (IHI 0070 5.3 V).
  if (!l1->get(CdTableL1::V))
    return std::unexpected(Fault{DmaOutcome::aborted, event_for(EventId::C_BAD_SUBSTREAMID, t)});
  // The level-2 table is aligned to its size; a 64KB table's L2Ptr[15:12] are ignored.
  const std::uint64_t l2 = align_down(l1->get(CdTableL1::L2Ptr), split + 6);
  return fetch_address(t, s, l2 + (ssid & ((1U << split) - 1)) * kCdBytes, EventClass::CD);
}

// The PA of a configuration structure at `addr`: addr itself, or in a nested configuration addr translated
// by stage 2 as a read, a fault reported with CLASS=CD (IHI 0070 3.4.3, 7.3.12).
std::expected<std::uint64_t, SmmuModel::Fault> SmmuModel::fetch_address(const Txn& t, const StreamEntry& s,
                                                                        std::uint64_t addr, EventClass cls) {
  if (s.config != StreamConfig::nested) return addr;
  ++counters_.walks;
  auto tr = walker_.stage2(*s.s2, addr, AccessType{});
  if (tr) return tr->output;
  WalkFault f = tr.error();
  f.stage2 = true;
  f.ipa = addr;
  Route r;
  r.stream = &s;
  r.stage2 = true;
  Fault fault = walk_fault(t, r, f);
  if (fault.event) fault.event->set(Event::CLASS, cls);
  return std::unexpected(fault);
}

// CD legality (IHI 0070 5.4 "CD validity"): anything ILLEGAL gives C_BAD_CD.
std::expected<ContextEntry, SmmuModel::Fault> SmmuModel::decode_cd(const Txn& t, const Cd& cd,
                                                                   const StreamEntry& s) const {
  const auto bad = [&](const char* field, std::string_view reason) {
    log::debug("smmu.model", "SID {:#x}: C_BAD_CD: {}: {}", t.stream.sid, field, reason);
    return std::unexpected(Fault{DmaOutcome::aborted, event_for(EventId::C_BAD_CD, t)});
  };
  auto s1 = stage1_params(cd, caps_);
  if (!s1) return bad(s1.error().field, s1.error().reason);
  // CD.S against the SMMU's stall model and the STE's S1STALLD (IHI 0070 5.5).
  switch (config_.idr0.get(Idr0::STALL_MODEL)) {
    case StallModel::stall_and_terminate:
      if (cd.get(Cd::S) && s.ste.get(Ste::S1STALLD)) return bad("S", "set, but the STE sets S1STALLD");
      break;
    case StallModel::terminate:
      if (cd.get(Cd::S)) return bad("S", "set, but IDR0.STALL_MODEL is terminate-only (0b01)");
      break;
    default:
      if (!cd.get(Cd::S)) return bad("S", "clear, but IDR0.STALL_MODEL forces stalls (0b10)");
      break;
  }
  ContextEntry e;
  e.cd = cd;
  e.s1 = *s1;
  // Without 16-bit ASIDs, ASID[15:8] is RES0 and ignored (IHI 0070 5.4 ASID).
  if (!config_.idr0.get(Idr0::ASID16)) e.s1.asid = static_cast<std::uint8_t>(e.s1.asid);
  e.record = cd.get(Cd::R);
  e.stall = cd.get(Cd::S);
  // With IDR0.TERM_MODEL == 1 a terminated transaction always aborts; CD.A chooses only otherwise.
  e.abort = cd.get(Cd::A) || config_.idr0.get(Idr0::TERM_MODEL);
  return e;
}

}  // namespace vsmmu::smmu::model
