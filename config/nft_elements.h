#pragma once
// Loads the elements of big sets (interval or plain) straight over nfnetlink (libmnl), in one
// transaction, bypassing libnftables' parser and evaluator: for 1,000,000 CIDRs libnftables
// takes ~700 MiB and tens of seconds; this takes ~40 bytes an element, sent once.

#include <string>

#include "config/nft_bigsets.h"

namespace tp::config {

// Adds the elements of every set in `split.sets` (read from `batch`, the text they were
// split from) to the existing sets of `table inet split.table`, as one nfnetlink batch: all
// or nothing. In interval sets adjacent intervals are merged as nft's auto-merge would. "" on
// success, else why.
std::string load_set_elements(const std::string& batch, const SplitBatch& split);

}  // namespace tp::config
