// SmmuModel: construction, the register file and its side effects (IHI 0070 6.3), and the DMA entry points.
#include "smmu/model/smmu_model.hpp"

#include "base/try.hpp"

#include <algorithm>
#include <cstring>

namespace vsmmu::smmu::model {
namespace {

constexpr const char* kWhere = "smmu.model";

DmaFault bus_error(std::uint64_t iova) { return DmaFault::without_event(DmaOutcome::bus_error, iova); }

}  // namespace

ModelConfig ModelConfig::reference() {
  ModelConfig c;
  c.idr0.set(Idr0::S2P, true)
      .set(Idr0::S1P, true)
      .set(Idr0::TTF, Ttf::aarch64)
      .set(Idr0::COHACC, true)
      .set(Idr0::HTTU, Httu::access_dirty)
      .set(Idr0::ASID16, true)
      .set(Idr0::MSI, true)
      .set(Idr0::SEV, true)
      .set(Idr0::VMID16, true)
      .set(Idr0::CD2L, true)
      .set(Idr0::TTENDIAN, TtEndian::little)
      .set(Idr0::STALL_MODEL, StallModel::terminate)
      .set(Idr0::TERM_MODEL, true)
      .set(Idr0::ST_LEVEL, StLevel::two_level);
  c.idr1.set(Idr1::SIDSIZE, 16).set(Idr1::SSIDSIZE, 20).set(Idr1::EVENTQS, 19).set(Idr1::CMDQS, 19);
  c.idr3.set(Idr3::FWB, true).set(Idr3::RIL, true).set(Idr3::BBML, 2);
  c.idr5.set(Idr5::OAS, Oas::bits48).set(Idr5::GRAN4K, true).set(Idr5::GRAN16K, true).set(Idr5::GRAN64K, true);
  c.aidr.set(Aidr::ArchMinorRev, 2);  // SMMUv3.2: RIL and the TTL/TG hints
  return c;
}

Result<std::unique_ptr<SmmuModel>> SmmuModel::create(PhysicalMemory& mem, const ModelConfig& config) {
  const auto& i0 = config.idr0;
  const auto& i1 = config.idr1;
  const auto& i5 = config.idr5;
  if (!i0.get(Idr0::S1P) && !i0.get(Idr0::S2P))
    return fail(EINVAL, kWhere, "IDR0 implements neither stage 1 nor stage 2 (S1P = S2P = 0)");
  if (i0.get(Idr0::TTF) != Ttf::aarch64)
    return fail(EINVAL, kWhere, "IDR0.TTF must be AArch64 only: the model walks no VMSAv8-32 tables");
  if (i0.get(Idr0::TTENDIAN) != TtEndian::little)
    return fail(EINVAL, kWhere, "IDR0.TTENDIAN must be little-endian only: the model walks no big-endian tables");
  if (i0.get(Idr0::ST_LEVEL) != StLevel::linear && i0.get(Idr0::ST_LEVEL) != StLevel::two_level)
    return fail(EINVAL, kWhere, "IDR0.ST_LEVEL {} is reserved", i0.raw(Idr0::ST_LEVEL));
  if (i0.get(Idr0::STALL_MODEL) == StallModel::reserved) return fail(EINVAL, kWhere, "IDR0.STALL_MODEL is reserved");
  if (i1.get(Idr1::SIDSIZE) > 32) return fail(EINVAL, kWhere, "IDR1.SIDSIZE {} exceeds 32", i1.get(Idr1::SIDSIZE));
  if (i1.get(Idr1::SSIDSIZE) > 20) return fail(EINVAL, kWhere, "IDR1.SSIDSIZE {} exceeds 20", i1.get(Idr1::SSIDSIZE));
  if (i1.get(Idr1::CMDQS) > 19 || i1.get(Idr1::EVENTQS) > 19 || i1.get(Idr1::PRIQS) > 19)
    return fail(EINVAL, kWhere, "IDR1 queue sizes are at most 2^19 entries");
  if (!i5.get(Idr5::GRAN4K) && !i5.get(Idr5::GRAN16K) && !i5.get(Idr5::GRAN64K))
    return fail(EINVAL, kWhere, "IDR5 implements no translation granule");
  if (i5.oas_bits() > 52)
    return fail(EINVAL, kWhere, "IDR5.OAS of {} bits: the model implements at most 52", i5.oas_bits());
  if (i5.get(Idr5::DS) || i5.get(Idr5::D128))
    return fail(EINVAL, kWhere, "IDR5.DS / IDR5.D128: LPA2 and 128-bit descriptors are not modelled");
  if (i5.get(Idr5::VAX) != Vax::va48 && i5.get(Idr5::VAX) != Vax::va52)
    return fail(EINVAL, kWhere, "IDR5.VAX {} is not modelled", i5.raw(Idr5::VAX));
  return std::unique_ptr<SmmuModel>(new SmmuModel(mem, config));
}

SmmuModel::SmmuModel(PhysicalMemory& mem, const ModelConfig& config)
    : mem_(mem),
      config_(config),
      command_features_(command_features(config.ids())),
      walker_(mem),
      tlb_(config.tlb_entries),
      config_cache_(config.cached_streams, config.cached_contexts),
      regs_(mem, config.ids(), *this, config.gbpa_abort_at_reset) {
  const auto httu = config.idr0.get(Idr0::HTTU);
  caps_.oas_bits = config.idr5.oas_bits();
  caps_.gran4k = config.idr5.get(Idr5::GRAN4K);
  caps_.gran16k = config.idr5.get(Idr5::GRAN16K);
  caps_.gran64k = config.idr5.get(Idr5::GRAN64K);
  caps_.httu_access = httu != Httu::none;
  caps_.httu_dirty = httu == Httu::access_dirty || httu == Httu::access_dirty_table;
  caps_.vax = config.idr5.get(Idr5::VAX) == Vax::va52;
  caps_.stt = config.idr3.get(Idr3::STT);
  caps_.xnx = config.idr3.get(Idr3::XNX);
}

// ---- registers ----------------------------------------------------------------------------------------

Result<std::uint64_t> SmmuModel::mmio_read(std::uint64_t offset, unsigned size) {
  return mmio(offset, size, nullptr);
}

Result<void> SmmuModel::mmio_write(std::uint64_t offset, std::uint64_t value, unsigned size) {
  VSMMU_TRY(mmio(offset, size, &value));
  return {};
}

Result<std::uint64_t> SmmuModel::mmio(std::uint64_t offset, unsigned size, const std::uint64_t* write_value) {
  std::unique_lock lock(mu_);
  auto result = regs_.access(offset, size, write_value);
  unlock_and_fire(lock);
  return result;
}

// ---- interrupts, introspection -------------------------------------------------------------------------

void SmmuModel::set_irq_handler(Irq line, std::function<void()> handler) {
  std::lock_guard lock(mu_);
  irq_handlers_[static_cast<std::size_t>(line)] = std::move(handler);
}

void SmmuModel::unlock_and_fire(std::unique_lock<std::mutex>& lock) {
  auto pending = regs_.take_pending_irqs();
  if (std::ranges::all_of(pending, [](unsigned n) { return n == 0; })) return;
  auto handlers = irq_handlers_;
  lock.unlock();  // a handler may well read a register
  for (std::size_t line = 0; line < pending.size(); ++line)
    for (unsigned n = 0; n < pending[line]; ++n)
      if (handlers[line]) handlers[line]();
}

Counters SmmuModel::counters() const {
  std::lock_guard lock(mu_);
  Counters c = counters_;
  c.descriptor_reads = walker_.descriptor_reads();
  const auto& r = regs_.counters();
  c.command_errors = r.command_errors;
  c.events = r.events;
  c.events_lost = r.events_lost;
  c.syncs = r.syncs;
  c.msis = r.msis;
  c.msis_aborted = r.msis_aborted;
  return c;
}

std::size_t SmmuModel::tlb_entries() const {
  std::lock_guard lock(mu_);
  return tlb_.size();
}

std::optional<bool> SmmuModel::effective_s2fwb(std::uint32_t sid) {
  std::lock_guard lock(mu_);
  Txn t;
  t.stream.sid = sid;
  auto s = stream_entry(t);  // raises no event: only finish_fault records one
  if (!s) return std::nullopt;
  return (*s)->s2fwb;
}

// ---- DMA ----------------------------------------------------------------------------------------------

std::expected<DmaTranslation, DmaFault> SmmuModel::translate(const DmaStream& stream, std::uint64_t iova, bool write) {
  std::unique_lock lock(mu_);
  Txn t{stream, write, iova};
  ++counters_.translations;
  auto r = translate_one(t);
  std::expected<DmaTranslation, DmaFault> out;
  if (r) out = *r;
  else {
    DmaFault f = finish_fault(t, r.error());
    if (f.outcome == DmaOutcome::stalled) f = hold(stream, write, iova, 1, true, {}, f);
    out = std::unexpected(f);
  }
  unlock_and_fire(lock);
  return out;
}

std::expected<void, DmaFault> SmmuModel::dma_read(const DmaStream& stream, std::uint64_t iova,
                                                  std::span<std::byte> out) {
  std::unique_lock lock(mu_);
  auto pieces = translate_range(stream, iova, out.size(), false);
  if (!pieces && pieces.error().outcome == DmaOutcome::stalled)
    pieces = std::unexpected(hold(stream, false, iova, out.size(), false, {}, pieces.error()));
  unlock_and_fire(lock);
  if (!pieces) {
    // A RAZ/WI termination completes the read with zeros (IHI 0070 3.12.2).
    if (pieces.error().outcome == DmaOutcome::raz_wi) std::ranges::fill(out, std::byte{0});
    return std::unexpected(pieces.error());
  }
  return read_pieces(*pieces, iova, out);
}

std::expected<void, DmaFault> SmmuModel::read_pieces(const Pieces& pieces, std::uint64_t iova,
                                                     std::span<std::byte> out) {
  if (pieces.size() == 0) return {};
  if (pieces.size() == 1) {
    if (auto r = mem_.read(pieces[0].pa, out); !r) return std::unexpected(bus_error(iova));
    return {};
  }
  // Several pieces: gather into a scratch buffer first so that a hole at a later piece leaves `out` untouched.
  std::vector<std::byte> scratch(out.size());
  std::size_t done = 0;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    if (auto r = mem_.read(p.pa, std::span(scratch).subspan(done, p.bytes)); !r)
      return std::unexpected(bus_error(iova + done));
    done += p.bytes;
  }
  std::ranges::copy(scratch, out.begin());
  return {};
}

std::expected<void, DmaFault> SmmuModel::dma_write(const DmaStream& stream, std::uint64_t iova,
                                                   std::span<const std::byte> in) {
  std::unique_lock lock(mu_);
  auto pieces = translate_range(stream, iova, in.size(), true);
  if (!pieces && pieces.error().outcome == DmaOutcome::stalled)
    pieces = std::unexpected(hold(stream, true, iova, in.size(), false, in, pieces.error()));
  unlock_and_fire(lock);
  if (!pieces) return std::unexpected(pieces.error());
  return write_pieces(stream.sid, *pieces, iova, in);
}

std::expected<void, DmaFault> SmmuModel::write_pieces(std::uint32_t sid, const Pieces& pieces, std::uint64_t iova,
                                                      std::span<const std::byte> in) {
  if (pieces.size() > 1) {
    // Probe every piece before writing any, so that a hole at a later piece moves no byte.
    std::vector<std::byte> probe;
    std::size_t done = 0;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const Piece& p = pieces[i];
      probe.resize(p.bytes);
      if (auto r = mem_.read(p.pa, probe); !r) return std::unexpected(bus_error(iova + done));
      done += p.bytes;
    }
  }
  std::size_t done = 0;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    if (auto r = mem_.write_from_stream(sid, p.pa, in.subspan(done, p.bytes)); !r)
      return std::unexpected(bus_error(iova + done));
    done += p.bytes;
  }
  return {};
}

}  // namespace vsmmu::smmu::model
