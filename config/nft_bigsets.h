#pragma once
// Big address sets in the generator's nft batch, as text: splitting a batch so the elements of
// big sets can go to the kernel without libnftables' parser (which needs ~700 bytes and ~10 µs
// per element), and compacting a batch a running process keeps (its big element lists
// replaced by a count and a hash), and the pieces of a reload that fills a changed set under a
// new name (renaming, leaving sets out, `add set` commands). Pure functions over the
// generator's exact format.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tp::config {

// Sets with at least this many elements are split off (and compacted). Smaller ones cost
// libnftables little and keep their error messages with line numbers.
inline constexpr size_t kBigSetElements = 4096;

struct BigSet {
    std::string name;
    int family = 0;    // AF_INET or AF_INET6
    size_t begin = 0;  // byte range of the element lines ("\t\t\tCIDR,\n") in the batch
    size_t end = 0;
    size_t elements = 0;
    bool interval = true;
};

struct SplitBatch {
    std::string table;
    // The batch with the big sets' elements left out: for check mode.
    std::string skeleton;
    // Stage 1: replaces the table with one holding the counters and the sets (big ones
    // empty), no chains, so it does nothing to packets yet.
    std::string sets_stage;
    // Stage 3, after the elements are in: the chains, added to that table.
    std::string rules_stage;
    std::vector<BigSet> sets;
};

// nullopt when `batch` is not in the generator's "add table; delete table; table T {" form or
// has no set of `min_elements` or more.
std::optional<SplitBatch> split_big_sets(const std::string& batch,
                                         size_t min_elements = kBigSetElements);

// The element lines of `set` in `batch`, one CIDR each ("1.2.3.0/24") without the tabs and
// commas, last first; `fn` is called for each.
template <typename Fn>
void for_each_element_descending(const std::string& batch, const BigSet& set, Fn fn) {
    size_t end = set.end;  // just past the current line's '\n'
    while (end > set.begin) {
        size_t nl = end - 1;
        size_t start = nl > set.begin ? batch.rfind('\n', nl - 1) : std::string::npos;
        start = start == std::string::npos || start < set.begin ? set.begin : start + 1;
        std::string_view line(batch.data() + start, nl - start);
        while (!line.empty() && line.front() == '\t') {
            line.remove_prefix(1);
        }
        if (!line.empty() && line.back() == ',') {
            line.remove_suffix(1);
        }
        if (!line.empty()) {
            fn(line);
        }
        end = start;
    }
}

// `batch` with each big set's element lines replaced by one line
// "\t\t\t# N elements, hash H": what a running process keeps to describe what it applied
// (inplace_batch only needs the objects; a reload compares compacted batches). Idempotent.
std::string compact_batch(const std::string& batch, size_t min_elements = kBigSetElements);

// `next_batch` without every big set whose compacted text appears in `compact_current` (the
// same declaration and elements as the running one); their names in `unchanged`. A reload
// then leaves those sets alone instead of flushing and refilling them through libnftables
// (nor declares them: libnftables would read an auto-merge set's elements back first).
// `next_batch` itself when it is not a generator batch.
std::string without_unchanged_sets(const std::string& compact_current,
                                   const std::string& next_batch,
                                   std::vector<std::string>* unchanged,
                                   size_t min_elements = kBigSetElements);

// `batch` with the sets named in `names` (old name -> new name) renamed: their declarations
// ("\tset OLD {") and every reference ("@OLD"). A reload fills a changed big set under a new
// name before its rules switch to it. `batch` itself when it is not a generator batch.
std::string rename_sets(const std::string& batch, const std::map<std::string, std::string>& names);

// `batch` without the sets in `names` (their declarations and elements): sets that already
// exist in the kernel as wanted.
std::string without_sets(const std::string& batch, const std::vector<std::string>& names);

// "add set inet T NEW { type ...; flags ...; }\n" for each set of `batch` in `names` (its name
// in `batch` -> NEW), no elements: adds them to an existing table. Commands, not a
// "table T { set ... }" block: for the block libnftables first reads every element of the
// table's auto-merge sets from the kernel (0.7 s and 130 MiB with 100,000 of them). "" when
// `batch` is not a generator batch.
std::string add_set_commands(const std::string& batch,
                             const std::map<std::string, std::string>& names);

// A 128-bit hash of `text` as 32 hex digits (two independent 64-bit hashes).
std::string text_hash(std::string_view text);

}  // namespace tp::config
