// A software SMMUv3 (Arm IHI 0070): the hardware of the simulated host. Software drives it the way Linux's
// arm-smmu-v3 drives a real one, through its registers: it builds a stream table, CDs and translation
// tables in physical memory, programs STRTAB_BASE and the queues, enables it through CR0, issues commands
// by writing CMDQ_PROD and reads event records from the event queue. Devices DMA through it.
//
// What is modelled: linear and 2-level stream tables and CD tables; STE configs abort, bypass, stage 1,
// stage 2 and nested (stage-1 structures and tables are IPAs translated by stage 2); a TLB tagged by
// VMID/ASID/address and a configuration cache by SID/SSID, both invalidated only by the commands the
// architecture names; the command queue with its error behaviour; the event queue with overflow; HTTU
// access/dirty updates; GBPA while SMMUEN == 0; wired interrupts (as callbacks) and MSIs.
// Stalls (IHI 0070 3.12.2): with IDR0.STALL_MODEL allowing them, a translation-related fault at a stage
// configured to stall (CD.S with STE.S1STALLD == 0, STE.S2S) holds the transaction and records its event with
// Stall = 1 and a STAG; CMD_RESUME retries or terminates it, CMD_STALL_TERM terminates a stream's, clearing
// SMMUEN terminates all. At most IDR5.STALL_MAX are held; a fault beyond that, or one whose record cannot be
// written, is terminated instead (reported with Stall = 0 when recorded; 3.12, "treat a stalling
// configuration as terminating"). No duplicate-stall suppression (3.12.2.1) and no early retry (3.12.2.2).
// Not modelled: Secure state, ATS translation requests, PRI, GATOS, big-endian or AArch32 tables, EL2
// stream worlds.
//
// Thread safety: every member may be called from any thread. A device may DMA while the host programs
// registers; interrupt callbacks run after the model's lock is released, on the calling thread.
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "smmu/command.hpp"
#include "smmu/command_legality.hpp"
#include "base/error.hpp"
#include "smmu/event.hpp"
#include "smmu/memory.hpp"
#include "smmu/mmio.hpp"
#include "smmu/model/config_cache.hpp"
#include "smmu/model/tlb.hpp"
#include "smmu/register_file.hpp"
#include "smmu/registers.hpp"
#include "smmu/walker.hpp"

namespace vsmmu::smmu::model {

// What an SMMU implementation is: its ID registers (IHI 0070 6.3.1-6.3.8) and sizes of its caches.
struct ModelConfig : IdRegisters {
  bool gbpa_abort_at_reset = false;   // GBPA.ABORT's reset value is IMPLEMENTATION DEFINED
  std::size_t tlb_entries = 8192;
  std::size_t cached_streams = 1024;
  std::size_t cached_contexts = 4096;

  // An SMMUv3.2 with both stages, nesting, HTTU access+dirty, range invalidation, S2FWB, 16-bit SIDs,
  // 20-bit SSIDs, 48-bit OAS, every granule, 2-level stream and CD tables, MSIs, no ATS/PRI/stall.
  static ModelConfig reference();
  const IdRegisters& ids() const { return *this; }
};

using smmu::Irq;

// The attributes of a DMA access (IHI 0070 3.9: PnU, InD).
struct DmaAttributes {
  bool privileged = false;
  bool instruction = false;
};

// A device's stream: its StreamID and, when it issues one, SubstreamID.
struct DmaStream {
  std::uint32_t sid = 0;
  std::optional<std::uint32_t> ssid;
  DmaAttributes attrs;
};

// Why a DMA did not move its data.
enum class DmaOutcome : std::uint8_t {
  aborted,      // terminated with an abort: the device sees an error, nothing moved
  raz_wi,       // terminated as RAZ/WI (CD.A == 0 with IDR0.TERM_MODEL == 0): reads see zeros, writes vanish
  bus_error,    // translated, but nothing is at the output address (an external abort on the data access)
  stalled,      // held by the SMMU after a stalling fault (IHI 0070 3.12.2) until CMD_RESUME / CMD_STALL_TERM:
                // nothing moved yet; take_stall(stall_id) says what became of it
};

struct DmaFault {
  DmaOutcome outcome = DmaOutcome::aborted;
  std::uint64_t iova = 0;            // the first address of the access that failed
  std::optional<Event> event;        // the event the SMMU raised, if any (whether or not it was recorded)
  bool recorded = false;             // the event was written to the event queue
  // DmaOutcome::stalled: the STAG of the stall event (Event::STAG) and the model's handle of the held
  // transaction, which stays the same when a retry stalls it again under a new STAG.
  std::optional<std::uint16_t> stag;
  std::uint64_t stall_id = 0;

  // A failure with no event: a bus error, or an access no SMMU check was reached for.
  static DmaFault without_event(DmaOutcome outcome, std::uint64_t iova) { return {outcome, iova, std::nullopt, false, std::nullopt, 0}; }
};

// A successful translation of one address.
// What became of a stalled transaction (SmmuModel::take_stall).
struct StallResolution {
  bool held = true;                  // still stalled: `fault` is the current stall (its STAG may be a new one)
  // Finished: nothing when the retry completed (the data moved), else the final fault (aborted, raz_wi,
  // bus_error).
  std::optional<DmaFault> fault;
  std::vector<std::byte> read_data;  // a read that finished: the bytes it read (zeros for RAZ/WI)
};

struct DmaTranslation {
  std::uint64_t pa = 0;
  std::uint64_t bytes = 0;           // bytes from pa to the end of the translation's leaf (or range)
  bool tlb_hit = false;
};

struct Counters {
  std::uint64_t translations = 0;    // addresses translated (one per page-sized piece of a DMA)
  std::uint64_t tlb_hits = 0;
  std::uint64_t tlb_misses = 0;
  std::uint64_t walks = 0;           // translation-table walks (stage 1, stage 2 or nested)
  std::uint64_t descriptor_reads = 0;  // translation-table descriptors fetched by the walker
  std::uint64_t ste_fetches = 0;
  std::uint64_t cd_fetches = 0;
  std::uint64_t config_hits = 0;     // STE or CD found in the configuration cache
  std::uint64_t commands = 0;        // commands consumed (the failing one of an error excluded)
  std::uint64_t command_errors = 0;
  std::uint64_t tlb_invalidated = 0;  // TLB entries removed by commands
  std::uint64_t events = 0;          // event records written to the event queue
  std::uint64_t events_lost = 0;     // records discarded: queue full (overflow), disabled, or write aborted
  std::uint64_t syncs = 0;           // CMD_SYNCs completed
  std::uint64_t msis = 0;            // MSI writes made
  std::uint64_t msis_aborted = 0;    //   of which reached no memory (MSI_*_ABT_ERR)
};

class SmmuModel final : public SmmuMmio, private RegisterEffects {
 public:
  // Checks that the ID registers describe an SMMU this model can be (EINVAL with the reason otherwise).
  static Result<std::unique_ptr<SmmuModel>> create(PhysicalMemory& mem, const ModelConfig& config);

  // ---- MMIO: offsets from the base of page 0 (page 1 at kPage1Offset); accesses of 4 or 8 bytes,
  // naturally aligned. A 64-bit register may be accessed as two 32-bit halves; an 8-byte access to two
  // 32-bit registers acts on both, low first. Holes read as zero and ignore writes (RAZ/WI).
  Result<std::uint64_t> mmio_read(std::uint64_t offset, unsigned size) override;
  Result<void> mmio_write(std::uint64_t offset, std::uint64_t value, unsigned size) override;

  // Interrupt lines. A wired interrupt is a call of the handler; with IDR0.MSI and a non-zero *_IRQ_CFG0
  // address the SMMU writes an MSI instead (CMD_SYNC CS=IRQ: its MSIAddr/MSIData).
  void set_irq_handler(Irq line, std::function<void()> handler);

  // ---- DMA. The whole range is translated (every page checked) before any byte moves; a fault raises its
  // event and moves nothing.
  std::expected<void, DmaFault> dma_read(const DmaStream& stream, std::uint64_t iova, std::span<std::byte> out);
  std::expected<void, DmaFault> dma_write(const DmaStream& stream, std::uint64_t iova,
                                          std::span<const std::byte> in);
  // Translates one address as a DMA of one byte would (events included), without moving data.
  std::expected<DmaTranslation, DmaFault> translate(const DmaStream& stream, std::uint64_t iova, bool write);

  // ---- Stalled transactions (IHI 0070 3.12.2). A DMA that stalls returns DmaOutcome::stalled with a
  // stall_id; the SMMU holds the access (a write's data with it) until software's CMD_RESUME (retry: translated
  // again as if new, and on success the data moves then; terminate: abort or RAZ/WI), CMD_STALL_TERM or
  // SMMUEN = 0. take_stall says where it stands; a finished one is forgotten once taken. nullopt: no such id.
  std::optional<StallResolution> take_stall(std::uint64_t stall_id);
  std::size_t stalled_transactions() const;  // held now

  // ---- Introspection for the simulated host and tests.
  // The effective STE.S2FWB of a stream (IHI 0070 5.2: with stage 2 and IDR3.FWB only), from its STE as the
  // SMMU would use it now (cached, or fetched without raising events); nullopt when the stream has no usable STE.
  std::optional<bool> effective_s2fwb(std::uint32_t sid);
  Counters counters() const;
  std::size_t tlb_entries() const;
  const ModelConfig& config() const { return config_; }

 private:
  SmmuModel(PhysicalMemory& mem, const ModelConfig& config);

  // A translation request inside the model.
  struct Txn {
    DmaStream stream;
    bool write = false;
    std::uint64_t iova = 0;
  };
  // The outcome of a failed step: what the device sees and the event the SMMU raises.
  struct Fault {
    DmaOutcome outcome = DmaOutcome::aborted;
    std::optional<Event> event;
    bool record = true;               // whether the event is to be recorded (CR2.RECINVSID, CD.R, STE.S2R)
    bool stall = false;               // the stage is configured to stall this fault (CD.S, STE.S2S; 5.5)
  };
  // A transaction the SMMU holds, or one that finished after it stalled and was not taken yet.
  struct Stalled {
    DmaStream stream;
    bool write = false;
    std::uint64_t iova = 0;
    std::uint64_t size = 0;
    bool probe = false;               // from translate(): no data moves on retry
    std::vector<std::byte> data;      // a write's bytes; a finished read's bytes
    bool held = true;
    std::uint16_t stag = 0;
    std::optional<DmaFault> fault;    // held: the stall; finished: the final fault, none when it completed
  };
  // The configuration an access uses: entries of the configuration cache (or of the uncached_* slots when
  // the cache keeps nothing), valid while mu_ is held and until the next configuration-cache change.
  struct Route {
    const StreamEntry* stream = nullptr;
    const ContextEntry* context = nullptr;  // stage 1 in use
    bool stage2 = false;                    // stage 2 in use
  };
  // The output of a DMA range: physically contiguous pieces in input order. Most DMAs need one, so a few
  // are held inline and the TLB-hit path does not allocate.
  struct Piece {
    std::uint64_t pa = 0;
    std::uint64_t bytes = 0;
  };
  class Pieces {
   public:
    void add(std::uint64_t pa, std::uint64_t bytes);
    std::size_t size() const { return count_; }
    const Piece& operator[](std::size_t i) const { return i < kInline ? inline_[i] : more_[i - kInline]; }

   private:
    static constexpr std::size_t kInline = 4;
    std::array<Piece, kInline> inline_{};
    std::vector<Piece> more_;
    std::size_t count_ = 0;
  };

  // ---- translation (translate.cpp); mu_ held.
  std::expected<Pieces, DmaFault> translate_range(const DmaStream& stream, std::uint64_t iova,
                                                              std::uint64_t size, bool write);
  std::expected<DmaTranslation, Fault> translate_one(const Txn& t);
  std::expected<DmaTranslation, Fault> walk(const Txn& t, const Route& route);
  Fault walk_fault(const Txn& t, const Route& route, const WalkFault& f) const;
  DmaFault finish_fault(const Txn& t, const Fault& f);
  // The bytes of translated pieces; no lock needed (the pieces are physical addresses).
  std::expected<void, DmaFault> read_pieces(const Pieces& pieces, std::uint64_t iova, std::span<std::byte> out);
  std::expected<void, DmaFault> write_pieces(std::uint32_t sid, const Pieces& pieces, std::uint64_t iova,
                                             std::span<const std::byte> in);

  // ---- stalls (stall.cpp); mu_ held.
  // A STAG for a new stall, none when IDR5.STALL_MAX transactions are held already.
  std::optional<std::uint16_t> alloc_stag() const;
  // Holds the transaction a DMA's fault stalled (the fault carries the STAG); returns the fault with stall_id.
  DmaFault hold(const DmaStream& stream, bool write, std::uint64_t iova, std::uint64_t size, bool probe,
                std::span<const std::byte> data, DmaFault fault);
  void resume(std::uint32_t sid, std::uint16_t stag, ResumeAction action);  // CMD_RESUME (4.7.1)
  void retry(std::uint64_t id);
  void terminate(Stalled& s, DmaOutcome how);
  void finish(Stalled& s, const DmaFault& final_fault);  // no longer held: its final fault
  void control_changed(Cr0 before, Cr0 after) override;  // SMMUEN 1 -> 0 terminates every stall

  // ---- configuration (stream_table.cpp); mu_ held.
  std::expected<Route, Fault> route(const Txn& t);
  std::expected<const StreamEntry*, Fault> stream_entry(const Txn& t);
  std::expected<std::uint64_t, Fault> ste_address(const Txn& t);
  std::expected<StreamEntry, Fault> decode_ste(const Txn& t, const Ste& ste) const;
  std::expected<const ContextEntry*, Fault> context_entry(const Txn& t, const StreamEntry& s, std::uint32_t ssid);
  std::expected<std::uint64_t, Fault> cd_address(const Txn& t, const StreamEntry& s, std::uint32_t ssid);
  std::expected<std::uint64_t, Fault> fetch_address(const Txn& t, const StreamEntry& s, std::uint64_t addr,
                                                    EventClass cls);
  std::expected<ContextEntry, Fault> decode_cd(const Txn& t, const Cd& cd, const StreamEntry& s) const;
  Event event_for(EventId id, const Txn& t) const;

  // ---- command queue (command_queue.cpp); mu_ held.
  void commands_published() override;  // RegisterEffects: consume the command queue
  std::optional<Cerror> execute(const Command& cmd);
  void invalidate_tlb(const Command& cmd);

  Result<std::uint64_t> mmio(std::uint64_t offset, unsigned size, const std::uint64_t* write_value);
  // Releases the lock, then calls the handlers of the wired interrupts raised while it was held.
  void unlock_and_fire(std::unique_lock<std::mutex>& lock);

  WalkCapabilities caps_;

  PhysicalMemory& mem_;
  const ModelConfig config_;
  const CommandFeatures command_features_;  // what config_ lets a command ask for (smmu/command_legality.hpp)
  mutable std::mutex mu_;
  Walker walker_;
  Tlb tlb_;
  ConfigCache config_cache_;
  StreamEntry uncached_stream_;    // where a Route points when the cache did not keep the entry
  ContextEntry uncached_context_;
  Counters counters_;
  std::map<std::uint64_t, Stalled> stalls_;  // by stall_id
  std::uint64_t next_stall_id_ = 1;
  mutable std::uint16_t next_stag_ = 0;

  // The programming interface (IHI 0070 6.3): registers and queues. CR0ACK and IRQ_CTRLACK always equal CR0
  // and IRQ_CTRL: the model applies every change before the write returns.
  RegisterFile regs_;
  std::array<std::function<void()>, 4> irq_handlers_;
};

}  // namespace vsmmu::smmu::model
