#pragma once
// Policy-routing generation: the fwmark rule and the "local default dev lo" route for each
// address family that some tproxy rule (or captured local traffic) uses.

#include <vector>

#include "config/kernel_setup.h"
#include "config/model.h"

namespace tp::config {

// Fills setup.rules and setup.routes (IPv4 first).
void generate_routes(const Model& model, KernelSetup& setup);

}  // namespace tp::config
