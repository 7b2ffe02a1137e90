# tp_config_apply: puts a KernelSetup into the kernel and takes it out again (libnftables,
# rtnetlink via libmnl), the start-up sweep, and the --check preflight. No io_uring here.
add_library(tp_config_apply STATIC
  ${CMAKE_CURRENT_LIST_DIR}/apply_journal.cc
  ${CMAKE_CURRENT_LIST_DIR}/cleanup.cc
  ${CMAKE_CURRENT_LIST_DIR}/conntrack_flush.cc
  ${CMAKE_CURRENT_LIST_DIR}/preflight_tproxy.cc
  ${CMAKE_CURRENT_LIST_DIR}/kernel_apply.cc
  ${CMAKE_CURRENT_LIST_DIR}/nft_apply.cc
  ${CMAKE_CURRENT_LIST_DIR}/nft_elements.cc
  ${CMAKE_CURRENT_LIST_DIR}/preflight.cc
  ${CMAKE_CURRENT_LIST_DIR}/preflight_env.cc
  ${CMAKE_CURRENT_LIST_DIR}/route_apply.cc
  ${CMAKE_CURRENT_LIST_DIR}/rule_counters.cc
)
target_link_libraries(tp_config_apply PUBLIC tp_config tp_plan PkgConfig::NFTABLES PkgConfig::MNL)
# `tpengine --version` prints this.
target_compile_definitions(tp_config_apply PUBLIC TPENGINE_VERSION="${PROJECT_VERSION}")
