#pragma once
// Applies a KernelSetup to the running kernel and takes it away again: routes, then ip rules,
// then the nft batch (the step that starts interception comes last), under an undo journal so
// a failure at any step leaves the namespace as it was. Reload changes only what differs.

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "config/apply_journal.h"
#include "config/kernel_setup.h"
#include "config/nft_apply.h"
#include "config/route_apply.h"

namespace tp::config {

struct SweepResult;

// The reload of a table in place, as one transaction: `flush table`, flush the sets both
// batches have, delete the objects `next` no longer has, then declare `next`'s objects. Base
// chains and sets that both have stay, so a packet meets either the old or the new rules of a
// chain, and the elements the two share are found throughout. (Replacing the table instead
// registers the new chains ahead of the old ones at the same priority: a packet crossing the
// commit between the two sees neither; and a new set looks empty until the commit ends.) ""
// when a batch is not in the generator's `add table; delete table; table T {` form or a
// chain's hook changed (then only a replacement will do).
std::string inplace_batch(const std::string& table, const std::string& current_batch,
                          const std::string& next_batch);

class KernelApplier {
  public:
    using Log = std::function<void(const std::string&)>;

    // nullptr (and `err`) if libnftables or rtnetlink cannot be opened.
    static std::unique_ptr<KernelApplier> open(std::string* err);

    // Verbose progress lines ("added ip -4 rule ..."); none by default.
    void set_log(Log log) { log_ = std::move(log); }

    // Test hook: make the step with this id fail as if the kernel refused it. Ids: "route4",
    // "route6", "rule4", "rule6", "nft". Empty = none.
    void set_fail_at(std::string step) { fail_at_ = std::move(step); }

    // Everything in `setup`, journaled. "" on success; else the error, after undoing every
    // step already taken (and any undo failure appended).
    std::string apply(const KernelSetup& setup);

    // Reload from `current` to `next`: new routes and rules first, then the table updated in
    // place in one transaction (see inplace_batch; a new table name: the new table first, the
    // old one deleted after it), then the routes and rules no longer wanted. On failure
    // `current` stays in force. A big set whose elements changed is filled first under a new
    // name ("dst4-big/N", over nfnetlink), and the in-place transaction switches the rules to
    // it and deletes the old one: libnftables never parses the elements, and no packet meets
    // a half-filled set.
    std::string replace(const KernelSetup& current, const KernelSetup& next);

    // Puts `setup`'s table back whole (after someone removed it). "" or the error.
    std::string restore_table(const KernelSetup& setup);

    // Removes everything of `setup` (sweep: table, rules, routes).
    SweepResult remove(const KernelSetup& setup);
    // Removes the rules and routes of `setup`, and its table when `include_table`.
    SweepResult sweep_stale(const KernelSetup& setup, bool include_table);

    NftContext& nft() { return *nft_; }
    Rtnl& rtnl() { return *rtnl_; }

  private:
    KernelApplier() = default;
    std::string inject(const std::string& step) const;
    std::string replace_table(const KernelSetup& current, const KernelSetup& next);
    // The table updated in place (see replace); kNoInPlace when the batches do not allow it.
    // *retry: whether replacing the table whole may still work after a failure (not when the
    // kernel refused the new elements).
    std::string update_in_place(const KernelSetup& current, const KernelSetup& next, bool* retry);
    std::string add_routing(const KernelSetup& setup, const KernelSetup* skip, UndoJournal& j);
    void log(const std::string& line) const {
        if (log_) {
            log_(line);
        }
    }
    // The generator's name of each big set that a reload renamed -> its name in the kernel.
    std::map<std::string, std::string> live_names_;
    unsigned generation_ = 0;
    std::unique_ptr<NftContext> nft_;
    std::unique_ptr<Rtnl> rtnl_;
    Log log_;
    std::string fail_at_;
};

}  // namespace tp::config
