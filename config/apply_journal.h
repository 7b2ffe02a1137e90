#pragma once
// The undo journal: every kernel change made while applying records how to take it back;
// on failure the records run in reverse so the namespace ends as it began.

#include <functional>
#include <string>
#include <vector>

namespace tp::config {

class UndoJournal {
  public:
    // An undo step returns "" on success, else why it failed.
    using Undo = std::function<std::string()>;

    UndoJournal() = default;
    ~UndoJournal();  // rolls back whatever was neither committed nor rolled back
    UndoJournal(const UndoJournal&) = delete;
    UndoJournal& operator=(const UndoJournal&) = delete;

    // Call right after the change `what` has succeeded.
    void record(std::string what, Undo undo);

    // Undoes every recorded change, newest first, keeps going past failures and returns one
    // line per failed undo ("" when everything was undone).
    std::string rollback();

    // Keeps the changes: the journal forgets them.
    void commit() { steps_.clear(); }

    size_t size() const { return steps_.size(); }

  private:
    struct Step {
        std::string what;
        Undo undo;
    };
    std::vector<Step> steps_;
};

}  // namespace tp::config
