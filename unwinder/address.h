// Addresses in another address space are not pointers: wrapping them (after rr's remote_ptr) keeps a
// value read from a target's stack, a guest-physical address and a local pointer from being confused.
// Arithmetic that stays in one space is allowed; crossing spaces needs an explicit translation.
#pragma once

#include <compare>
#include <cstdint>

namespace framecert {

template <typename Space>
struct Address {
  uint64_t value = 0;

  constexpr Address() = default;
  constexpr explicit Address(uint64_t v) : value(v) {}

  constexpr Address operator+(uint64_t n) const { return Address(value + n); }
  constexpr Address operator-(uint64_t n) const { return Address(value - n); }
  constexpr uint64_t operator-(Address other) const { return value - other.value; }
  constexpr auto operator<=>(const Address&) const = default;
  constexpr bool aligned(uint64_t n) const { return value % n == 0; }
};

struct RemoteSpace;     // the virtual address space of the task being unwound (a process, or a guest kernel)
struct GuestVirtSpace;  // a guest's virtual addresses, translated through its page tables
struct GuestPhysSpace;  // a guest's physical addresses: offsets into its RAM

using RemoteAddr = Address<RemoteSpace>;
using GuestVirt = Address<GuestVirtSpace>;
using GuestPhys = Address<GuestPhysSpace>;

// x86-64 with 4-level paging: bits 63..47 must all equal bit 47.
constexpr bool is_canonical(uint64_t va) {
  uint64_t top = va >> 47;
  return top == 0 || top == 0x1ffff;
}

}  // namespace framecert
