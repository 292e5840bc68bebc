// The event queue (IHI 0070 3.5, 7.2, 7.4), global errors (7.5) and interrupts (3.18).
#include "smmu/model/smmu_model.hpp"

namespace vsmmu::smmu::model {

bool SmmuModel::record_event(const Event& event) {
  // With the queue disabled, events are discarded (IHI 0070 6.3.9 EVENTQEN).
  if (!cr0_.get(Cr0::EVENTQEN)) {
    ++counters_.events_lost;
    return false;
  }
  const QueueIndex q = eventq_index();
  const std::uint32_t prod = q.advance(eventq_prod_.get(QueueProd::WR), 0);
  const std::uint32_t cons = q.advance(eventq_cons_.get(QueueCons::RD), 0);
  if (q.full(prod, cons)) {
    // Full: the record is lost. Entering the overflow condition toggles PROD.OVFLG so it differs from
    // CONS.OVACKFLG; while that is unacknowledged, further losses change nothing (IHI 0070 7.4).
    if (eventq_prod_.get(QueueProd::OVFLG) == eventq_cons_.get(QueueCons::OVACKFLG))
      eventq_prod_.set(QueueProd::OVFLG, !eventq_prod_.get(QueueProd::OVFLG));
    ++counters_.events_lost;
    return false;
  }
  const unsigned align = std::max(5U, q.log2size + 5);  // aligned to its size, at least 32 bytes
  const std::uint64_t base = eventq_base_.get(QueueBase::ADDR) & ~((1ULL << align) - 1);
  if (!mem_.write_record(base + q.index(prod) * Event::bytes, event)) {
    raise_gerror(Gerror{}.set(Gerror::EVTQ_ABT_ERR, true));
    ++counters_.events_lost;
    return false;
  }
  eventq_prod_.set(QueueProd::WR, q.advance(prod));
  ++counters_.events;
  if (irq_ctrl_.get(IrqCtrl::EVENTQ_IRQEN))
    signal(Irq::eventq, eventq_irq_cfg0_, eventq_irq_cfg1_.get(IrqCfg1::DATA),
           Gerror{}.set(Gerror::MSI_EVTQ_ABT_ERR, true));
  return true;
}

void SmmuModel::raise_gerror(Gerror errors) {
  // Only errors not already active toggle (IHI 0070 7.5).
  const std::uint32_t fresh = errors.value() & ~Gerror::active(gerror_, gerrorn_).value() & Gerror::kErrorMask;
  if (fresh == 0) return;
  gerror_ = Gerror::of(gerror_.value() ^ fresh);
  if (irq_ctrl_.get(IrqCtrl::GERROR_IRQEN))
    signal(Irq::gerror, gerror_irq_cfg0_, gerror_irq_cfg1_.get(IrqCfg1::DATA),
           Gerror{}.set(Gerror::MSI_GERROR_ABT_ERR, true));
}

// An interrupt: an MSI when the SMMU implements them and software gave an address, else the wired line
// (IHI 0070 3.18). An MSI write that aborts is a global error of its own.
void SmmuModel::signal(Irq line, IrqCfg0 msi_address, std::uint32_t msi_data, Gerror msi_abort) {
  const std::uint64_t addr = msi_address.get(IrqCfg0::ADDR);
  if (config_.idr0.get(Idr0::MSI) && addr != 0) {
    ++counters_.msis;
    if (!mem_.write32(addr, msi_data)) raise_gerror(msi_abort);
    return;
  }
  ++pending_irqs_[static_cast<std::size_t>(line)];
}

}  // namespace vsmmu::smmu::model
