#include "host/sim/s2_domain.hpp"

#include <algorithm>
#include <atomic>

#include "base/log.hpp"
#include "base/try.hpp"
#include "smmu/translation_table.hpp"

namespace vsmmu::host::sim {

namespace {

constexpr const char* kWhere = "sim.io-pgtable";
constexpr smmu::Granule kGranule = smmu::Granule::k4K;
// Address space reserved for one domain's tables; pages are touched (and count) only as tables are built.
// 1 GiB of tables maps far more than any simulated guest has (a 4KB-page map of 512 GiB needs 1 GiB).
constexpr std::uint64_t kPoolBytes = 1ULL << 30;

}  // namespace

Result<std::unique_ptr<S2Domain>> S2Domain::create(ArmSmmuDevice& smmu, Options options) {
  std::unique_ptr<S2Domain> d(new S2Domain(smmu, options));
  VSMMU_TRY_ASSIGN(auto vmid, smmu.alloc_vmid());
  d->vmid_ = vmid;
  d->has_vmid_ = true;
  VSMMU_TRY_ASSIGN(auto pool, MappedRegion::anonymous(kPoolBytes, "a stage-2 page table pool"));
  d->pool_ = std::move(pool);
  VSMMU_TRY_ASSIGN(auto pa, smmu.memory().place(d->pool_.bytes(), 1ULL << 21, 0));
  d->pool_pa_ = pa;
  d->alloc_.emplace(smmu.memory().memory(), pa, kPoolBytes);
  d->tables_.emplace(smmu.memory().memory(), *d->alloc_, smmu::Stage::s2, kGranule, smmu.features().ias_bits);
  VSMMU_TRY(d->tables_->init());
  return d;
}

S2Domain::~S2Domain() {
  if (has_vmid_) {
    // arm_smmu_domain_free_paging: nothing of this VMID may stay cached once its tables are gone.
    if (auto r = smmu_.tlb_inv_vmid(vmid_); !r) log::error(kWhere, "VMID {}: TLB invalidation failed: {}", vmid_, r.error());
    smmu_.free_vmid(vmid_);
  }
  tables_.reset();
  alloc_.reset();
  if (pool_) smmu_.memory().remove(pool_pa_);
}

smmu::Ste S2Domain::ste(bool ats) const {
  using smmu::Ste;
  const auto& f = smmu_.features();
  Ste s;
  s.set(Ste::V, true).set(Ste::Config, smmu::StreamConfig::s2_translate);
  s.set(Ste::EATS, ats ? smmu::Eats::translate : smmu::Eats::abort).set(Ste::SHCFG, 1);  // shareability: incoming
  // With S2FWB the stage-2 attributes decide cacheability, so a guest's stage 1 cannot make accesses
  // non-coherent (the driver sets it for nest parents: IO_PGTABLE_QUIRK_ARM_S2FWB).
  if (options_.nest_parent && f.s2fwb) s.set(Ste::S2FWB, true);
  s.set(Ste::S2VMID, vmid_)
      .set(Ste::S2T0SZ, tables_->t0sz())
      .set(Ste::S2SL0, tables_->s2sl0())
      .set(Ste::S2IR0, smmu::Cacheability::wbra)
      .set(Ste::S2OR0, smmu::Cacheability::wbra)
      .set(Ste::S2SH0, smmu::Shareability::inner)
      .set(Ste::S2TG, smmu::tg0_from_granule(kGranule))
      .set(Ste::S2PS, *smmu::ps_from_address_bits(std::min(f.oas_bits, 52U)))
      .set(Ste::S2AA64, true)
      .set(Ste::S2PTW, true)
      .set(Ste::S2R, true)
      .set(Ste::S2HA, options_.dirty_tracking)
      .set(Ste::S2HD, options_.dirty_tracking)
      .set(Ste::S2TTB, tables_->root());
  // arm_smmu_make_s2_domain_ste sets S2S for a stall_enabled master without ATS; with STALL_FORCE every master
  // is, and an STE without S2S would be ILLEGAL there (IHI 0070 5.5).
  if (f.stall_force && !ats) s.set(Ste::S2S, true);
  return s;
}

Result<void> S2Domain::map(std::uint64_t iova, std::uint64_t pa, std::uint64_t size, bool read, bool write,
                           bool blocks) {
  smmu::MapAttributes a;
  a.allow_blocks = blocks;
  a.read = read;
  a.write = write;
  a.execute = false;
  // Writable leaves start writable-dirty with DBM set, as io-pgtable-arm maps them under the HD quirk; the
  // first SET_DIRTY_TRACKING(enable) or read-and-clear makes them clean.
  a.dbm = options_.dirty_tracking && write;
  if (auto r = tables_->map(iova, pa, size, a); !r) {
    // TableBuilder leaves what it mapped before the failure: take it back out.
    (void)tables_->unmap(iova, size);
    return fail(r.error().err == EFAULT ? EFAULT : ENOMEM, kWhere, "mapping IOVA [{:#x}, +{:#x}) in VMID {} failed: {}",
                iova, size, vmid_, r.error().message);
  }
  mapped_ += size;
  return {};
}

Result<void> S2Domain::unmap(std::uint64_t iova, std::uint64_t size) {
  auto r = tables_->unmap(iova, size);
  mapped_ -= std::min(mapped_, size);
  VSMMU_TRY(smmu_.tlb_inv_s2_range(vmid_, iova, size, options_.nest_parent));
  if (!r) return fail(r.error().err, kWhere, "unmapping IOVA [{:#x}, +{:#x}) in VMID {} failed: {}", iova, size, vmid_,
                      r.error().message);
  return {};
}

template <class Fn>
void S2Domain::walk(std::uint64_t table, int level, std::uint64_t base, std::uint64_t lo, std::uint64_t hi,
                    std::uint64_t need, Fn&& fn) {
  using smmu::Descriptor;
  const unsigned shift = smmu::level_shift(kGranule, level);
  const std::uint64_t entries = level == static_cast<int>(tables_->start_level())
                                    ? smmu::root_entries(kGranule, smmu_.features().ias_bits, level)
                                    : 1ULL << smmu::bits_per_level(kGranule);
  std::byte* p = smmu_.memory().memory().host_pointer(table, entries * 8);
  if (!p) return;
  auto* words = reinterpret_cast<std::uint64_t*>(p);
  const std::uint64_t first = (std::max(lo, base) - base) >> shift;
  const std::uint64_t span_end = base + (entries << shift);  // wraps to 0 for a 64-bit space; not here
  const std::uint64_t last = std::min((std::min(hi, span_end) - 1 - base) >> shift, entries - 1);
  if (level == smmu::kFinalLevel) {
    // Only pages here: one load and one test per descriptor, and `fn` for those that have every bit of `need`
    // (a 4 KiB-page walk spends nearly all its time in this loop). Relaxed: nothing is read through a page.
    const std::uint64_t want = need | Descriptor::Valid.insert(0, true);
    for (std::uint64_t i = first; i <= last; ++i) {
      std::atomic_ref<std::uint64_t> slot(words[i]);
      if ((slot.load(std::memory_order_relaxed) & want) != want) continue;
      fn(slot, base + (i << shift), 1ULL << shift);
    }
    return;
  }
  for (std::uint64_t i = first; i <= last; ++i) {
    std::atomic_ref<std::uint64_t> slot(words[i]);
    const std::uint64_t d = slot.load(std::memory_order_acquire);
    if (!Descriptor::Valid.extract(d)) continue;
    const std::uint64_t ia = base + (i << shift);
    if (Descriptor::Table.extract(d)) {
      walk(Descriptor::output_address(d, smmu::granule_shift(kGranule), false), level + 1, ia, lo, hi, need, fn);
      continue;
    }
    if ((d & need) == need) fn(slot, ia, 1ULL << shift);
  }
}

Result<void> S2Domain::read_and_clear_dirty(std::uint64_t iova, std::uint64_t size, bool no_clear,
                                            const std::function<void(std::uint64_t, std::uint64_t)>& record) {
  using smmu::Descriptor;
  std::uint64_t cleared_lo = ~0ULL, cleared_hi = 0;
  // Adjacent dirty leaves are reported as one run.
  std::uint64_t run_lo = 0, run_hi = 0;
  // Only leaves with DBM and S2AP[1] (writable-dirty) can be dirty: the walk skips the rest without a call.
  const std::uint64_t dirty = Descriptor::S2AP_W.insert(Descriptor::DBM.insert(0, true), true);
  walk(tables_->root(), static_cast<int>(tables_->start_level()), 0, iova, iova + size, dirty,
       [&](std::atomic_ref<std::uint64_t>& slot, std::uint64_t ia, std::uint64_t bytes) {
         std::uint64_t d = slot.load(std::memory_order_acquire);
         if (!Descriptor::DBM.extract(d) || !Descriptor::S2AP_W.extract(d)) return;
         if (run_hi != run_lo && run_hi != ia) {
           record(run_lo, run_hi - run_lo);
           run_lo = run_hi = 0;
         }
         if (run_hi == run_lo) run_lo = ia;
         run_hi = ia + bytes;
         if (no_clear) return;
         // The SMMU may be setting the bit concurrently: clear it with a compare-and-swap.
         while (!slot.compare_exchange_weak(d, Descriptor::S2AP_W.insert(d, false), std::memory_order_acq_rel)) {
         }
         cleared_lo = std::min(cleared_lo, ia);
         cleared_hi = std::max(cleared_hi, ia + bytes);
       });
  if (run_hi != run_lo) record(run_lo, run_hi - run_lo);
  if (cleared_hi > cleared_lo) return smmu_.tlb_inv_s2_range(vmid_, cleared_lo, cleared_hi - cleared_lo, options_.nest_parent);
  return {};
}

}  // namespace vsmmu::host::sim
