#include "harness/shadow/shadow_stacks.h"

#include <algorithm>
#include <bit>
#include <stdexcept>

namespace framecert::shadow {

ShadowStacks::ShadowStacks(uint64_t region_size) {
  if (region_size < 16 || !std::has_single_bit(region_size)) {
    throw std::invalid_argument("shadow stack region size must be a power of two >= 16");
  }
  region_shift_ = static_cast<unsigned>(std::countr_zero(region_size));
}

ShadowStacks::Stripe& ShadowStacks::stripe_for(uint64_t key) const {
  // Task stacks sit at regular strides in vmalloc space (stack plus guard page, aligned), so the low bits of
  // the region number are far from uniform; a multiplicative hash spreads them over the stripes.
  return stripes_[(key * 0x9e3779b97f4a7c15ull) >> (64 - kStripeBits)];
}

ShadowStacks::Region& ShadowStacks::region_in(Stripe& s, uint64_t key) {
  if (s.last == nullptr || s.last_key != key) {
    s.last = &s.regions[key];
    s.last_key = key;
  }
  return *s.last;
}

void ShadowStacks::on_call(uint64_t slot, uint64_t return_address) {
  const uint64_t key = slot >> region_shift_;
  Stripe& s = stripe_for(key);
  std::lock_guard lock(s.mu);
  Region& r = region_in(s, key);
  ++s.counters.calls;
  while (!r.empty() && r.back().slot <= slot) {
    r.pop_back();
    ++s.counters.dropped;
  }
  r.push_back({slot, return_address});
}

bool ShadowStacks::on_ret(uint64_t slot) {
  const uint64_t key = slot >> region_shift_;
  Stripe& s = stripe_for(key);
  std::lock_guard lock(s.mu);
  ++s.counters.rets;
  // A ret into a region never called into (the first return of a new task into ret_from_fork) creates nothing.
  Region* r = s.last != nullptr && s.last_key == key ? s.last : nullptr;
  if (r == nullptr) {
    auto it = s.regions.find(key);
    if (it == s.regions.end()) {
      ++s.counters.unmatched;
      return false;
    }
    r = &it->second;
    s.last = r;
    s.last_key = key;
  }
  while (!r->empty() && r->back().slot < slot) {
    r->pop_back();
    ++s.counters.dropped;
  }
  if (!r->empty() && r->back().slot == slot) {
    r->pop_back();
    return true;
  }
  ++s.counters.unmatched;
  return false;
}

void ShadowStacks::resync(uint64_t slot, uint64_t target) {
  const uint64_t key = slot >> region_shift_;
  Stripe& s = stripe_for(key);
  std::lock_guard lock(s.mu);
  auto it = s.regions.find(key);
  if (it == s.regions.end()) return;
  Region& r = it->second;
  // Entries are ordered by decreasing slot: search from the back (the lowest) upward for the nearest match.
  for (size_t i = r.size(); i-- > 0;) {
    if (r[i].slot <= slot || r[i].return_address != target) continue;
    s.counters.dropped += r.size() - i - 1;
    r.resize(i);
    // The ret did return through this entry after all: no longer unmatched.
    ++s.counters.resynced;
    --s.counters.unmatched;
    return;
  }
}

namespace {
void add(Counters& total, const Counters& c) {
  total.calls += c.calls;
  total.rets += c.rets;
  total.unmatched += c.unmatched;
  total.dropped += c.dropped;
  total.resynced += c.resynced;
}
}  // namespace

Snapshot ShadowStacks::snapshot() const {
  // Lock every stripe (always in index order, so two snapshots cannot deadlock) and hold them all until the
  // copy is done: a vCPU running meanwhile waits rather than leaving a half-updated view.
  std::array<std::unique_lock<std::mutex>, size_t{1} << kStripeBits> locks;
  for (size_t i = 0; i < stripes_.size(); ++i) locks[i] = std::unique_lock(stripes_[i].mu);
  Snapshot out;
  for (const Stripe& s : stripes_) {
    add(out.counters, s.counters);
    for (const auto& kv : s.regions) out.entries.insert(out.entries.end(), kv.second.begin(), kv.second.end());
  }
  for (auto& l : locks) l.unlock();
  std::sort(out.entries.begin(), out.entries.end(), [](const Entry& a, const Entry& b) { return a.slot < b.slot; });
  return out;
}

Counters ShadowStacks::counters() const {
  std::array<std::unique_lock<std::mutex>, size_t{1} << kStripeBits> locks;
  for (size_t i = 0; i < stripes_.size(); ++i) locks[i] = std::unique_lock(stripes_[i].mu);
  Counters total;
  for (const Stripe& s : stripes_) add(total, s.counters);
  return total;
}

}  // namespace framecert::shadow
