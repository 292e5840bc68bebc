// Translating a transaction (IHI 0070 3.2 "SMMU operation"): GBPA while disabled, the STE/CD route, the
// TLB, and table walks; faults become events as 7.3 describes them.
#include "base/try.hpp"
#include "smmu/model/smmu_model.hpp"

namespace vsmmu::smmu::model {
namespace {

// The architecture's permission check for an access (IHI 0070 3.9: an instruction fetch is a read that
// needs execute permission; SMMU writes are always data).
bool permitted(const Permissions& p, bool write, bool instruction) {
  if (write) return p.write;
  if (instruction) return p.execute;
  return p.read;
}

EventId event_id(FaultType type) {
  switch (type) {
    case FaultType::translation: return EventId::F_TRANSLATION;
    case FaultType::address_size: return EventId::F_ADDR_SIZE;
    case FaultType::access: return EventId::F_ACCESS;
    case FaultType::permission: return EventId::F_PERMISSION;
    case FaultType::walk_eabt: break;
  }
  return EventId::F_WALK_EABT;
}

}  // namespace

void SmmuModel::Pieces::add(std::uint64_t pa, std::uint64_t bytes) {
  // Physically contiguous with the previous piece: extend it.
  if (count_ > 0) {
    Piece& last = count_ <= kInline ? inline_[count_ - 1] : more_.back();
    if (last.pa + last.bytes == pa) {
      last.bytes += bytes;
      return;
    }
  }
  if (count_ < kInline) inline_[count_] = Piece{pa, bytes};
  else more_.push_back(Piece{pa, bytes});
  ++count_;
}

std::expected<SmmuModel::Pieces, DmaFault> SmmuModel::translate_range(const DmaStream& stream, std::uint64_t iova,
                                                                       std::uint64_t size, bool write) {
  Pieces pieces;
  if (size == 0) return pieces;
  if (iova + (size - 1) < iova)
    return std::unexpected(DmaFault::without_event(DmaOutcome::aborted, iova));  // wraps: no such bus access
  // Every page is translated, and any fault reported, before the caller moves a byte.
  std::uint64_t done = 0;
  while (done < size) {
    Txn t{stream, write, iova + done};
    ++counters_.translations;
    auto tr = translate_one(t);
    if (!tr) return std::unexpected(finish_fault(t, tr.error()));
    const std::uint64_t bytes = std::min(size - done, tr->bytes);
    pieces.add(tr->pa, bytes);
    done += bytes;
  }
  return pieces;
}

std::expected<DmaTranslation, SmmuModel::Fault> SmmuModel::translate_one(const Txn& t) {
  // While SMMUEN == 0 every transaction follows GBPA: abort, or bypass with no event (IHI 0070 6.3.14).
  if (!regs_.cr0().get(Cr0::SMMUEN)) {
    if (regs_.gbpa().get(Gbpa::ABORT)) return std::unexpected(Fault{DmaOutcome::aborted, std::nullopt, false});
    return DmaTranslation{t.iova, ~t.iova + 1 == 0 ? ~0ULL : ~t.iova + 1, false};
  }
  VSMMU_TRY_ASSIGN(auto r, route(t));
  return walk(t, r);
}

std::expected<DmaTranslation, SmmuModel::Fault> SmmuModel::walk(const Txn& t, const Route& route) {
  const bool s1 = route.context != nullptr;
  const bool s2 = route.stage2;
  if (!s1 && !s2) return DmaTranslation{t.iova, ~t.iova + 1 == 0 ? ~0ULL : ~t.iova + 1, false};  // bypass

  TlbRegime regime;
  regime.stage = s1 && s2 ? TlbStage::nested : s1 ? TlbStage::s1 : TlbStage::s2;
  if (s2) regime.vmid = route.stream->s2->vmid;
  if (s1) regime.asid = route.context->s1.asid;
  regime.privileged = t.stream.attrs.privileged;
  // With TBI the top byte is not part of the address (IHI 0070 5.4 TBI0): tagged pointers share entries.
  std::uint64_t input = t.iova;
  if (s1 && route.context->s1.tbi) input &= (1ULL << 56) - 1;

  const bool instruction = t.stream.attrs.instruction && !t.write;
  if (auto hit = tlb_.lookup(regime, input)) {
    // A hit that does not permit the access is walked again: the walk either makes it permitted (an HTTU
    // dirty update) or reports the fault with its full syndrome, as the architecture lets a TLB miss anytime.
    if (permitted(hit->perm, t.write, instruction)) {
      ++counters_.tlb_hits;
      const std::uint64_t pa = hit->translate(input);
      return DmaTranslation{pa, hit->input_base + (1ULL << hit->size_log2) - input, true};
    }
  }
  ++counters_.tlb_misses;
  ++counters_.walks;

  AccessType access{t.write, instruction, t.stream.attrs.privileged};
  std::expected<Translation, WalkFault> tr;
  if (s1 && s2) tr = walker_.nested(route.context->s1, *route.stream->s2, t.iova, access);
  else if (s1) tr = walker_.stage1(route.context->s1, t.iova, access);
  else tr = walker_.stage2(*route.stream->s2, t.iova, access);
  if (!tr) return std::unexpected(walk_fault(t, route, tr.error()));

  TlbEntry e;
  e.regime = regime;
  e.size_log2 = tr->size_log2;
  e.input_base = input & ~((1ULL << tr->size_log2) - 1);
  e.output_base = tr->output - (input - e.input_base);
  e.perm = tr->perm;
  // A writable-clean page is cached as read-only, so that the first write walks again and marks it dirty
  // (IHI 0070 3.13.3: dirty state is set by the write that needs it).
  if (tr->write_needs_dirty) e.perm.write = false;
  e.level = tr->level;
  // Stage-1 leaves with nG == 0 are global: they match any ASID (IHI 0070 3.17.1).
  e.global = s1 && !Descriptor{{tr->descriptor}}.get(Descriptor::nG);
  e.granule = s1 ? route.context->s1.granule : route.stream->s2->granule;
  tlb_.insert(e);
  return DmaTranslation{tr->output, e.input_base + (1ULL << e.size_log2) - input, false};
}

// A walk fault as an event (IHI 0070 7.3.12-7.3.16): S2 says which stage faulted, CLASS what the access
// was for (IN the input address, TT a stage-1 table access translated by stage 2), IPA the stage-2 input.
SmmuModel::Fault SmmuModel::walk_fault(const Txn& t, const Route& route, const WalkFault& f) const {
  Event e = event_for(event_id(f.type), t);
  e.set(Event::S2, f.stage2).set(Event::CLASS, f.on_table_walk ? EventClass::TT : EventClass::IN);
  if (f.stage2) e.set(Event::IPA, f.ipa);
  if (f.on_table_walk) e.set(Event::TTRnW, !f.table_write);
  if (f.type == FaultType::walk_eabt) e.set(Event::FetchAddr, f.fetch_address);

  Fault fault;
  fault.event = e;
  // Translation-stage faults are recorded per stage by STE.S2R and CD.R (IHI 0070 5.2, 5.4); an external
  // abort on a walk always is.
  if (f.type == FaultType::walk_eabt) fault.record = true;
  else if (f.stage2) fault.record = route.stream->s2_record;
  else fault.record = route.context && route.context->record;
  // Stage-1 faults terminate as CD.A says; stage-2 faults abort (IHI 0070 3.12.2).
  const bool raz_wi = !f.stage2 && route.context && !route.context->abort;
  fault.outcome = raz_wi ? DmaOutcome::raz_wi : DmaOutcome::aborted;
  // The four translation-related faults stall where their stage says so: CD.S at stage 1, STE.S2S at stage 2
  // (a CD fetch through stage 2 included) (IHI 0070 3.12, 5.5). finish_fault decides whether it can.
  if (f.type != FaultType::walk_eabt)
    fault.stall = f.stage2 ? route.stream->s2_stall : route.context && route.context->stall;
  return fault;
}

DmaFault SmmuModel::finish_fault(const Txn& t, const Fault& f) {
  DmaFault out{f.outcome, t.iova, std::nullopt, false, std::nullopt, 0};
  if (!f.event) return out;
  // Only the fields the event type defines are written; the rest of the record is zero (IHI 0070 7.3).
  Event e = *f.event;
  if (auto info = event_info(static_cast<std::uint8_t>(e.get(Event::ID))))
    for (std::size_t i = 0; i < Event::words; ++i) e.dw[i] &= info->dw_defined[i];
  if (f.stall) {
    // A stall is always recorded, with Stall = 1 and the STAG that CMD_RESUME names (IHI 0070 3.12.2, 5.5 S,
    // 7.3.13-16). Beyond IDR5.STALL_MAX held transactions, or when the record cannot be written, the model
    // terminates the transaction instead (3.12: an implementation may treat a stalling configuration as
    // terminating; the spec retries an unwritable stall record later, which this model does not).
    if (auto stag = alloc_stag()) {
      Event s = e;
      s.set(Event::Stall, true).set(Event::STAG, *stag);
      if (regs_.record_event(s)) {
        out.outcome = DmaOutcome::stalled;
        out.event = s;
        out.recorded = true;
        out.stag = *stag;
        return out;
      }
      out.event = e;
      return out;  // not written: terminated as the stage terminates, its record lost
    }
  }
  out.event = e;
  if (f.record) out.recorded = regs_.record_event(e);
  return out;
}

}  // namespace vsmmu::smmu::model
