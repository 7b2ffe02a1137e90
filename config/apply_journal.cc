// UndoJournal: reverse-order undo of applied kernel changes.
#include "config/apply_journal.h"

namespace tp::config {

UndoJournal::~UndoJournal() {
    rollback();
}

void UndoJournal::record(std::string what, Undo undo) {
    steps_.push_back(Step{std::move(what), std::move(undo)});
}

std::string UndoJournal::rollback() {
    std::string failures;
    while (!steps_.empty()) {
        Step step = std::move(steps_.back());
        steps_.pop_back();
        std::string why = step.undo();
        if (!why.empty()) {
            failures += "cannot undo `" + step.what + "`: " + why + "\n";
        }
    }
    return failures;
}

}  // namespace tp::config
