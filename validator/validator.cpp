#include "validator/validator.h"

#include <algorithm>
#include <exception>
#include <new>
#include <set>
#include <thread>

#include "validator/checker.h"
#include "validator/decoded_object.h"
#include "validator/decoder.h"
#include "validator/elf_file.h"
#include "validator/frame_pointer_check.h"
#include "validator/frame_table_builder.h"
#include "validator/memory_budget.h"
#include "validator/rbp_flow.h"

namespace framecert {

namespace {

// One finding per function (docs/rules.md): the checker stops a function at its first violation, but
// structural errors found while decoding (several jumps to nowhere, say) and framecert's own rules may
// name a function again; the first stays.
std::vector<Finding> first_per_function(const std::vector<Finding>& findings) {
  std::vector<Finding> out;
  std::set<std::string> named;
  for (const Finding& f : findings)
    if (f.function.empty() || named.insert(f.function).second) out.push_back(f);
  return out;
}

Result<ObjectReport> check(const std::string& path, const CheckOptions& options);

}  // namespace

// An exception (out of memory despite the budget, a state table past its limit) becomes the object's error:
// with several objects checked on worker threads it would otherwise end the process.
Result<ObjectReport> check_object(const std::string& path, const CheckOptions& options) {
  try {
    return check(path, options);
  } catch (const std::bad_alloc&) {
    return fail("{}: out of memory", path);
  } catch (const std::exception& e) {
    return fail("{}: {}", path, e.what());
  }
}

namespace {

// Below this much code a second thread costs more than it saves (Kbuild's typical object has a few KiB).
constexpr uint64_t kThreadedCode = 256 * 1024;

// `code`: the object's bytes of code (code_bytes).
unsigned decode_threads(uint64_t code, unsigned asked) {
  if (asked) return asked;
  if (code < kThreadedCode) return 1;
  return std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
}

Result<ObjectReport> check(const std::string& path, const CheckOptions& options) {
  auto elf = ElfFile::open(path);
  if (!elf) return tl::unexpected(elf.error());
  static const Decoder decoder;
  // Instruction offsets are 32-bit (validator/insn.h): x86-64 branches reach only +-2 GiB anyway.
  for (const ElfSection& sec : (*elf)->sections())
    if (sec.executable() && sec.bytes.size() > UINT32_MAX)
      return fail("{}: section {} holds {} bytes of code; framecert checks code sections below 4 GiB", path, sec.name,
                  sec.bytes.size());
  const uint64_t code = code_bytes(**elf);
  const unsigned threads = decode_threads(code, options.threads);
  // The counting pass (lengths only) sizes the instruction table exactly and splits the code for threads. A
  // small object on one thread skips it and decodes into a growing table: at most one instruction per byte
  // of its code is within what the memory check always affords (Kbuild's objects are mostly this kind).
  const bool count_first = threads > 1 || code >= kThreadedCode;
  const DecodePlan plan = count_first ? plan_decode(**elf, decoder, threads) : DecodePlan{};
  if (auto fits = fits_in_this_process(count_first ? plan.total : code); !fits)
    return fail("{}: {}", path, fits.error());
  DecodedObject obj = build_decoded_object(**elf, decoder, plan, threads, options.kernel);

  ObjectReport report;
  report.object = path;
  report.instructions = obj.insns.size();
  CheckResult result;
  const bool whole_object_fatal =
      std::any_of(obj.fatal.begin(), obj.fatal.end(), [](const Finding& f) { return f.function.empty(); });
  if (whole_object_fatal) {
    // Like objtool, a structural error (undecodable bytes, an unannotated intra-function call) stops
    // the check of the whole object: control flow cannot be trusted past it.
    for (const Finding& f : obj.fatal)
      if (f.function.empty()) {
        report.findings.push_back(f);
        break;
      }
    result.state_of_insn.assign(obj.insns.size(), -1);
    result.function_failed.assign(obj.functions.size(), true);
  } else {
    result = check_functions(obj, options.explain, threads);
    result.findings.insert(result.findings.begin(), obj.fatal.begin(), obj.fatal.end());
    if (result.findings.empty()) check_reachability(obj, result);
  }
  find_unchecked_instructions(obj, result);
  // What rbp holds along the followed paths: for framecert's own rule and for the metadata.
  const std::vector<uint8_t> bp = rbp_values(obj, result, threads);
  if (!whole_object_fatal) {
    check_frame_pointer_kept(obj, bp, result);
    check_outermost_frames(obj, bp, result);
    report.findings = first_per_function(result.findings);
  }
  report.findings.insert(report.findings.begin(), obj.notes.begin(), obj.notes.end());
  // framecert's own rule, never suppressed by other findings (docs/rules.md).
  for (Finding& f : returns_outside_functions(obj, result)) report.findings.push_back(std::move(f));
  for (const Function& f : obj.functions)
    if (f.canonical && f.parent >= 0 && &obj.functions[f.parent] == &f) ++report.functions_checked;
  if (options.want_metadata) report.metadata = build_frame_table(obj, result, bp);
  return report;
}

}  // namespace

}  // namespace framecert
