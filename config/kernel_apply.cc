// KernelApplier: journaled apply, diffing reload and removal of tpengine's kernel set-up.
#include "config/kernel_apply.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <optional>
#include <sstream>

#include "config/cleanup.h"
#include "config/nft_bigsets.h"

namespace tp::config {
namespace {

// update_in_place's answer when the batches do not allow it (then only a replacement will do).
const char* const kNoInPlace = "(no in-place update)";

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

// The generator's batch: "add table inet T\ndelete table inet T\ntable inet T {\n" + body.
std::string batch_prefix(const std::string& table) {
    return "add table inet " + table + "\ndelete table inet " + table + "\n";
}

// The objects declared at the table's top level ("\tKIND NAME {"), as "KIND NAME" -> the line
// after it (a chain's type/hook/priority).
bool table_objects(const std::string& batch, const std::string& table,
                   std::map<std::string, std::string>* objects) {
    if (batch.rfind(batch_prefix(table) + "table inet " + table + " {\n", 0) != 0) {
        return false;
    }
    std::istringstream in(batch);
    std::string line;
    std::string pending;
    while (std::getline(in, line)) {
        if (!pending.empty()) {
            (*objects)[pending] = line;
            pending.clear();
        }
        if (line.size() < 2 || line[0] != '\t' || line[1] == '\t' || line.back() != '{') {
            continue;
        }
        std::istringstream words(line);
        std::string kind, name;
        words >> kind >> name;
        if (kind.empty() || name.empty() || name == "{") {
            return false;
        }
        pending = kind + " " + name;
        (*objects)[pending] = "";
    }
    return true;
}

}  // namespace

std::string inplace_batch(const std::string& table, const std::string& current_batch,
                          const std::string& next_batch) {
    std::map<std::string, std::string> old_objects, new_objects;
    if (!table_objects(current_batch, table, &old_objects) ||
        !table_objects(next_batch, table, &new_objects)) {
        return {};
    }
    // Big sets whose elements did not change are neither flushed nor refilled (nft_bigsets.h).
    std::vector<std::string> unchanged;
    std::string next_body = without_unchanged_sets(current_batch, next_batch, &unchanged);
    std::string out = "flush table inet " + table + "\n";
    for (const auto& [key, head] : old_objects) {
        std::string kind = key.substr(0, key.find(' '));
        std::string name = key.substr(key.find(' ') + 1);
        auto next = new_objects.find(key);
        if (kind == "chain" && next != new_objects.end() && next->second != head) {
            return {};  // a chain's hook cannot change in place
        }
        bool kept = next != new_objects.end() && next->second == head;
        if (!kept) {
            out += "delete " + kind + " inet " + table + " " + name + "\n";
        } else if ((kind == "set" || kind == "map") &&
                   std::find(unchanged.begin(), unchanged.end(), name) == unchanged.end()) {
            // Emptied and refilled in the same transaction, never replaced: the packet path
            // reads a set's elements from a copy the commit swaps only after the rules took
            // effect, so a new set would look empty to the new rules for a moment.
            out += "flush " + kind + " inet " + table + " " + name + "\n";
        }
    }
    return out + next_body.substr(batch_prefix(table).size());
}

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
            live_names_.clear();
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
        err = inject("nft");
        if (err.empty()) {
            err = replace_table(current, next);
        }
        if (!err.empty()) {
            err = "table inet " + next.nft_table + ": " + err;
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

std::string KernelApplier::replace_table(const KernelSetup& current, const KernelSetup& next) {
    if (current.nft_table == next.nft_table) {
        bool retry = false;
        std::string err = update_in_place(current, next, &retry);
        if (err.empty()) {
            return {};
        }
        if (!retry) {
            return err;  // the kernel refused the new elements: a replacement would fail too
        }
        if (err != kNoInPlace) {
            // Someone changed our table under us: replacing it whole still works, but only
            // try that with a batch the kernel accepts (the replacement goes in steps).
            log("updating table inet " + next.nft_table + " in place failed; replacing it:\n" +
                err);
            if (std::string check = nft_->run(next.nft_batch, true); !check.empty()) {
                return err;
            }
        }
        err = nft_->run(next.nft_batch);
        if (err.empty()) {
            live_names_.clear();
            log("replaced table inet " + next.nft_table);
        }
        return err;
    }
    // A new name: the new table first, then the old one goes. Both in one transaction would
    // leave the same gap as a table replacement; this way they overlap instead (rules of both
    // tables act on a packet meanwhile, the old ones to the same effect as before).
    std::string err = nft_->run(next.nft_batch);
    if (!err.empty()) {
        return err;
    }
    live_names_.clear();
    log("replaced table inet " + next.nft_table);
    if (!current.nft_table.empty()) {
        bool deleted = false;
        std::string gone = nft_->delete_table(current.nft_table, &deleted);
        if (!gone.empty()) {
            log("could not remove the old table: " + gone);
        } else if (deleted) {
            log("removed table inet " + current.nft_table);
        }
    }
    return {};
}

std::string KernelApplier::update_in_place(const KernelSetup& current, const KernelSetup& next,
                                           bool* retry) {
    *retry = true;
    const std::string& table = next.nft_table;
    if (nft_->table_state(table) != 1) {
        return kNoInPlace;
    }
    // Worked out with the generator's set names; the kernel's (live_names_) only in the
    // small texts at the end: no copy of a big list's text is made.
    std::vector<std::string> unchanged;
    (void)without_unchanged_sets(current.nft_batch, next.nft_batch, &unchanged);
    // New sets, filled before the switch: big ones whose elements changed, and any whose
    // declaration changed (a big list of hosts is a hash set of its size, others interval
    // sets: an existing set cannot be redeclared).
    std::map<std::string, std::string> fresh;  // name -> the new set's name
    std::vector<std::string> changed;
    if (std::optional<SplitBatch> split = split_big_sets(next.nft_batch, 1)) {
        for (const BigSet& s : split->sets) {
            std::map<std::string, std::string> same{{s.name, s.name}};
            std::string before = add_set_commands(current.nft_batch, same);
            bool big_changed =
                s.elements >= kBigSetElements &&
                std::find(unchanged.begin(), unchanged.end(), s.name) == unchanged.end();
            bool redeclared = !before.empty() && before != add_set_commands(next.nft_batch, same);
            if (big_changed || redeclared) {
                fresh[s.name] = s.name + "/" + std::to_string(++generation_);
                changed.push_back(s.name);
            }
        }
    }
    std::map<std::string, std::string> next_names = live_names_;
    for (const auto& [name, kernel_name] : fresh) {
        next_names[name] = kernel_name;
    }
    // The switch: the rules to the new sets, the old ones deleted, in one transaction; the
    // new sets are not declared again (they exist, filled).
    std::string inplace =
        inplace_batch(table, rename_sets(current.nft_batch, live_names_),
                      rename_sets(without_sets(next.nft_batch, changed), next_names));
    if (inplace.empty()) {
        return kNoInPlace;
    }
    if (!fresh.empty()) {
        if (std::string err = nft_->fill_sets(next.nft_batch, fresh); !err.empty()) {
            *retry = false;
            return err;  // nothing else changed yet
        }
        log("filled set(s) of table inet " + table + " under new names for the switch");
    }
    std::string err = nft_->run(inplace);
    if (!err.empty()) {
        if (!fresh.empty()) {
            if (std::string undo = nft_->drop_sets(next.nft_batch, fresh); !undo.empty()) {
                err += "\nand removing the new sets failed: " + undo;
            }
        }
        return err;
    }
    live_names_ = std::move(next_names);
    log("updated table inet " + table + " in place");
    return {};
}

std::string KernelApplier::restore_table(const KernelSetup& setup) {
    std::string err = nft_->run(setup.nft_batch);
    if (err.empty()) {
        live_names_.clear();
    }
    return err;
}

SweepResult KernelApplier::remove(const KernelSetup& setup) {
    return sweep(*nft_, *rtnl_, setup, true);
}

SweepResult KernelApplier::sweep_stale(const KernelSetup& setup, bool include_table) {
    return sweep(*nft_, *rtnl_, setup, include_table);
}

}  // namespace tp::config
