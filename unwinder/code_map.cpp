#include "unwinder/code_map.h"

#include <algorithm>

namespace framecert {

void CodeMap::add(CodeImage image) {
  for (const CodeImage& other : images_) {
    const uint64_t lo = std::max(other.start, image.start), hi = std::min(other.end, image.end);
    if (lo < hi) contested_.push_back(Range{lo, hi});
  }
  auto it = std::upper_bound(images_.begin(), images_.end(), image.start,
                             [](uint64_t s, const CodeImage& i) { return s < i.start; });
  images_.insert(it, std::move(image));
}

const CodeImage* CodeMap::find(uint64_t address) const {
  auto it = std::upper_bound(images_.begin(), images_.end(), address,
                             [](uint64_t a, const CodeImage& i) { return a < i.start; });
  if (it == images_.begin()) return nullptr;
  --it;
  if (contested_.empty()) return address < it->end ? &*it : nullptr;
  // Ranges overlap somewhere: an earlier, longer image may hold `address` past a later one's end.
  for (const Range& r : contested_)
    if (address >= r.start && address < r.end) return nullptr;
  for (auto i = std::make_reverse_iterator(it + 1); i != images_.rend(); ++i)
    if (address < i->end) return &*i;
  return nullptr;
}

std::optional<FrameState> CodeMap::state_at(const CodeImage& img, uint64_t pc) const {
  if (!img.metadata) return std::nullopt;
  return img.metadata->state_at_address(pc - img.bias);
}

std::optional<CallSite> CodeMap::call_site_at(const CodeImage& img, uint64_t return_address) const {
  if (!img.metadata) return std::nullopt;
  return img.metadata->call_site_at_address(return_address - img.bias);
}

std::optional<uint64_t> CodeMap::call_target(const CodeImage& img, const CallSite& call) const {
  if (!img.metadata || img.copied) return std::nullopt;
  auto target = img.metadata->call_target(call);
  if (!target) return std::nullopt;
  return *target + img.bias;
}

std::optional<uint64_t> CodeMap::syscall_before(const CodeImage& img, uint64_t pc) const {
  if (!img.metadata) return std::nullopt;
  auto where = img.metadata->locate(pc - img.bias);
  if (!where) return std::nullopt;
  auto site = img.metadata->syscall_before(*where);
  if (!site) return std::nullopt;
  return pc - (site->return_offset - site->offset);
}

std::vector<uint64_t> CodeMap::tail_call_targets(uint64_t pc) const {
  const CodeImage* img = find(pc);
  if (!img || !img->metadata || img->copied) return {};
  auto where = img->metadata->locate(pc - img->bias);
  if (!where) return {};
  std::vector<uint64_t> out = img->metadata->tail_call_targets(*where);
  for (uint64_t& a : out) a += img->bias;
  return out;
}

std::vector<SelfSlot> CodeMap::self_slots(uint64_t pc) const {
  const CodeImage* img = find(pc);
  if (!img || !img->metadata) return {};
  auto where = img->metadata->locate(pc - img->bias);
  return where ? img->metadata->self_slots(*where) : std::vector<SelfSlot>{};
}

std::optional<FunctionExtent> CodeMap::function_at(uint64_t pc) const {
  const CodeImage* img = find(pc);
  if (!img) return std::nullopt;
  if (img->metadata) {
    auto where = img->metadata->locate(pc - img->bias);
    if (where) {
      if (const FunctionEntry* f = img->metadata->function_at(*where)) {
        uint64_t start = img->metadata->sections[f->section].address + f->offset + img->bias;
        return FunctionExtent{start, f->size, f->name, f->has(metadata::kFuncCold)};
      }
    }
  }
  if (img->symbols) {
    if (const Symbol* s = img->symbols->lookup(pc - img->bias)) {
      bool cold = s->name.find(".cold") != std::string::npos;
      return FunctionExtent{s->address + img->bias, s->size, s->name, cold};
    }
  }
  return std::nullopt;
}

SymbolizedPc CodeMap::symbolize(uint64_t pc, bool is_return_address) const {
  SymbolizedPc out;
  uint64_t probe = is_return_address ? pc - 1 : pc;
  const CodeImage* img = find(probe);
  if (!img) return out;
  out.object = img->path;
  // The ELF symbol table first (an independent source), the metadata's function list second.
  if (img->symbols) {
    if (const Symbol* s = img->symbols->lookup(probe - img->bias)) {
      out.symbol = s->name;
      out.offset = pc - (s->address + img->bias);
      return out;
    }
  }
  if (auto f = function_at(probe)) {
    out.symbol = f->name;
    out.offset = pc - f->start;
  }
  return out;
}

}  // namespace framecert
