#pragma once
// nftables through libnftables, in-process: run tpengine's batch as one transaction (or in
// check mode), delete the owned table, and explain failures with the batch lines nft names.

#include <map>
#include <memory>
#include <string>
#include <vector>

struct nft_ctx;

namespace tp::config {

class NftContext {
  public:
    // nullptr (and `err`) when libnftables cannot make a context.
    static std::unique_ptr<NftContext> create(std::string* err);
    ~NftContext();
    NftContext(const NftContext&) = delete;
    NftContext& operator=(const NftContext&) = delete;

    // Runs `batch` as one transaction; with `check_only` the kernel validates it and throws
    // it away (nft -c). Returns "" on success, else nft's error followed by the numbered
    // batch lines it refers to (nft locations "batch:LINE:COL").
    // A generator batch with big sets (nft_bigsets.h) goes in three steps instead (table and
    // sets, elements over nfnetlink, chains), all or nothing; check mode then checks all
    // but the big sets' elements.
    std::string run(const std::string& batch, bool check_only = false);

    // Creates the sets of generator batch `batch` named in `names` (a name in the batch -> the
    // name to give the new set) in its (existing) table, empty, and loads their elements from
    // `batch` over nfnetlink: a reload fills a changed big set under a new name while the rules
    // still use the old one. Nothing matches the new sets yet. On failure they are removed
    // again. "" on success, else the error.
    std::string fill_sets(const std::string& batch,
                          const std::map<std::string, std::string>& names);

    // Removes the sets fill_sets(batch, names) made, if they exist. "" or the error.
    std::string drop_sets(const std::string& batch,
                          const std::map<std::string, std::string>& names);

    // Deletes `table inet NAME` if it exists (safe when it does not). *deleted tells whether
    // it was there. Returns "" on success, else the error.
    std::string delete_table(const std::string& name, bool* deleted = nullptr);

    // 1 if `table inet NAME` exists, 0 if not, -errno if the kernel would not say (EPERM).
    int table_state(const std::string& name);

    // `nft -t list ruleset` (set elements left out) into *out, for the preflight's look at the
    // rest of the firewall. Returns "" on success, else the error.
    std::string list_ruleset(std::string* out);

  private:
    NftContext() = default;
    std::string run_text(const std::string& batch, bool check_only);
    // A fresh libnftables context, dropping the old one's cache.
    void reset();
    // Runs `cmd`; fills output/error text; returns nft's status (0 = ok).
    int run_raw(const std::string& cmd, std::string* output, std::string* error);
    nft_ctx* ctx_ = nullptr;
};

// nft's error text with the lines of `batch` it points at appended, numbered (pure; tested).
std::string explain_nft_error(const std::string& error, const std::string& batch);

}  // namespace tp::config
