// KernelApplier: journaled apply, diffing reload and removal of tpengine's kernel set-up.
#include "config/kernel_apply.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "config/cleanup.h"

namespace tp::config {
namespace {

const char* family_digit(int family) {
    return family == AF_INET6 ? "6" : "4";
}

bool same_rule(const PolicyRule& a, const PolicyRule& b) {
    return a.family == b.family && a.mark == b.mark && a.mask == b.mask && a.table == b.table &&
           a.priority == b.priority;
}

// The change failed: say what and, for missing privileges, how to get them.
std::string failure(const NlError& e) {
    if (e.code == -EPERM) {
        return e.message + " (needs root or CAP_NET_ADMIN)";
    }
    return e.message;
}

bool same_route(const LocalRoute& a, const LocalRoute& b) {
    return a.family == b.family && a.table == b.table;
}

template <typename T, typename Eq>
bool contains(const std::vector<T>& list, const T& item, Eq eq) {
    return std::any_of(list.begin(), list.end(), [&](const T& x) { return eq(x, item); });
}

}  // namespace

std::unique_ptr<KernelApplier> KernelApplier::open(std::string* err) {
    std::unique_ptr<KernelApplier> a(new KernelApplier());
    a->nft_ = NftContext::create(err);
    if (!a->nft_) {
        return nullptr;
    }
    a->rtnl_ = Rtnl::open(err);
    if (!a->rtnl_) {
        return nullptr;
    }
    return a;
}

std::string KernelApplier::inject(const std::string& step) const {
    if (!fail_at_.empty() && fail_at_ == step) {
        return "injected failure at step " + step + " (TPENGINE_TEST_FAIL_AT)";
    }
    return {};
}

// Adds the routes, then the rules, of `setup` that are not already in `skip`.
std::string KernelApplier::add_routing(const KernelSetup& setup, const KernelSetup* skip,
                                       UndoJournal& j) {
    for (const LocalRoute& route : setup.routes) {
        if (skip != nullptr && contains(skip->routes, route, same_route)) {
            continue;
        }
        std::string what = describe(route);
        std::string err = inject(std::string("route") + family_digit(route.family));
        if (err.empty()) {
            NlError e = rtnl_->add_route(route);
            err = e.ok() ? "" : failure(e);
        }
        if (!err.empty()) {
            return what + ": " + err;
        }
        log("added " + what);
        j.record(what, [this, route] {
            NlError e = rtnl_->del_route(route);
            return e.ok() ? std::string() : e.message;
        });
    }
    for (const PolicyRule& rule : setup.rules) {
        if (skip != nullptr && contains(skip->rules, rule, same_rule)) {
            continue;
        }
        std::string what = describe(rule);
        std::string err = inject(std::string("rule") + family_digit(rule.family));
        if (err.empty()) {
            NlError e = rtnl_->add_rule(rule);
            err = e.ok() ? "" : failure(e);
        }
        if (!err.empty()) {
            return what + ": " + err;
        }
        log("added " + what);
        j.record(what, [this, rule] {
            NlError e = rtnl_->del_rule(rule);
            return e.ok() ? std::string() : e.message;
        });
    }
    return {};
}

std::string KernelApplier::apply(const KernelSetup& setup) {
    UndoJournal journal;
    std::string err = add_routing(setup, nullptr, journal);
    if (err.empty()) {
        err = inject("nft");
        if (err.empty()) {
            err = nft_->run(setup.nft_batch);
        }
        if (!err.empty()) {
            err = "table inet " + setup.nft_table + ": " + err;
        } else {
            log("replaced table inet " + setup.nft_table);
        }
    }
    if (err.empty()) {
        journal.commit();
        return {};
    }
    size_t steps = journal.size();
    std::string undo_errors = journal.rollback();
    log("undid " + std::to_string(steps) + " step(s)");
    return err + (undo_errors.empty() ? "" : "\n" + undo_errors);
}

std::string KernelApplier::replace(const KernelSetup& current, const KernelSetup& next) {
    UndoJournal journal;
    std::string err = add_routing(next, &current, journal);
    if (err.empty()) {
        std::string batch = next.nft_batch;
        if (!current.nft_table.empty() && current.nft_table != next.nft_table) {
            // Same transaction: the old table goes exactly when the new one arrives.
            batch += "\ndelete table inet " + current.nft_table + "\n";
        }
        err = inject("nft");
        if (err.empty()) {
            err = nft_->run(batch);
        }
        if (!err.empty()) {
            err = "table inet " + next.nft_table + ": " + err;
        } else {
            log("replaced table inet " + next.nft_table);
        }
    }
    if (!err.empty()) {
        std::string undo_errors = journal.rollback();
        return err + (undo_errors.empty() ? "" : "\n" + undo_errors);
    }
    journal.commit();
    // Only now retire what the new set-up no longer uses: rules before routes.
    std::string leftovers;
    for (const PolicyRule& rule : current.rules) {
        if (!contains(next.rules, rule, same_rule)) {
            NlError e = rtnl_->del_rule(rule);
            if (e.ok()) {
                log("removed " + describe(rule));
            } else {
                leftovers += describe(rule) + ": " + e.message + "\n";
            }
        }
    }
    for (const LocalRoute& route : current.routes) {
        if (!contains(next.routes, route, same_route)) {
            NlError e = rtnl_->del_route(route);
            if (e.ok()) {
                log("removed " + describe(route));
            } else {
                leftovers += describe(route) + ": " + e.message + "\n";
            }
        }
    }
    if (!leftovers.empty()) {
        log("could not remove old policy routing:\n" + leftovers);
    }
    return {};
}

SweepResult KernelApplier::remove(const KernelSetup& setup) {
    return sweep(*nft_, *rtnl_, setup, true);
}

SweepResult KernelApplier::sweep_stale(const KernelSetup& setup, bool include_table) {
    return sweep(*nft_, *rtnl_, setup, include_table);
}

}  // namespace tp::config
