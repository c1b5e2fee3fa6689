// Which offsets a set of ranges covers, answered by binary search: the ranges are merged once, so a question
// costs O(log n) instead of a scan of every symbol or function (a kernel image has ~10^5 of each, and the
// passes that ask run once per instruction of a kind).
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace framecert {

class CoveredRanges {
 public:
  // [begin, end) is covered; call done() once every range is in.
  void add(uint64_t begin, uint64_t end) { spans_.emplace_back(begin, end); }

  void done() {
    std::sort(spans_.begin(), spans_.end());
    std::vector<std::pair<uint64_t, uint64_t>> merged;
    for (const auto& span : spans_)
      if (!merged.empty() && span.first <= merged.back().second)
        merged.back().second = std::max(merged.back().second, span.second);
      else
        merged.push_back(span);
    spans_ = std::move(merged);
  }

  bool covers(uint64_t offset) const {
    auto it = std::upper_bound(spans_.begin(), spans_.end(), offset,
                               [](uint64_t o, const std::pair<uint64_t, uint64_t>& s) { return o < s.first; });
    return it != spans_.begin() && offset < std::prev(it)->second;
  }

 private:
  std::vector<std::pair<uint64_t, uint64_t>> spans_;
};

}  // namespace framecert
