#pragma once
// nftables generation: a pure function from the validated model to one batch that replaces
// `table inet <name>` whether or not it exists (add + delete + define, one transaction).

#include <string>

#include "config/model.h"

namespace tp::config {

std::string generate_nft(const Model& model);

}  // namespace tp::config
