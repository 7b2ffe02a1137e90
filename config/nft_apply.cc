// libnftables wrapper for tpengine's owned table: one context, output and errors captured
// in memory, the batch run as a single transaction.
#include "config/nft_apply.h"

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <nftables/libnftables.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

#include "config/nft_bigsets.h"
#include "config/nft_elements.h"

namespace tp::config {

std::unique_ptr<NftContext> NftContext::create(std::string* err) {
    std::unique_ptr<NftContext> c(new NftContext());
    c->ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
    if (c->ctx_ == nullptr) {
        *err = "libnftables: cannot create a context";
        return nullptr;
    }
    if (nft_ctx_buffer_output(c->ctx_) != 0 || nft_ctx_buffer_error(c->ctx_) != 0) {
        *err = "libnftables: cannot buffer output";
        return nullptr;
    }
    return c;
}

NftContext::~NftContext() {
    if (ctx_ != nullptr) {
        nft_ctx_free(ctx_);
    }
}

std::string NftContext::list_ruleset(std::string* out) {
    unsigned flags = nft_ctx_output_get_flags(ctx_);
    nft_ctx_output_set_flags(ctx_, flags | NFT_CTX_OUTPUT_TERSE);
    std::string error;
    int rc = run_raw("list ruleset", out, &error);
    nft_ctx_output_set_flags(ctx_, flags);
    return rc == 0 ? std::string() : error.empty() ? std::string("nft list ruleset failed") : error;
}

int NftContext::run_raw(const std::string& cmd, std::string* output, std::string* error) {
    int rc = nft_run_cmd_from_buffer(ctx_, cmd.c_str());
    // Reading the buffers also resets them for the next command.
    const char* out = nft_ctx_get_output_buffer(ctx_);
    const char* err = nft_ctx_get_error_buffer(ctx_);
    if (output != nullptr) {
        *output = out != nullptr ? out : "";
    }
    if (error != nullptr) {
        *error = err != nullptr ? err : "";
    }
    return rc;
}

std::string NftContext::run(const std::string& batch, bool check_only) {
    std::optional<SplitBatch> split = split_big_sets(batch);
    if (!split) {
        std::string err = run_text(batch, check_only);
        // libnftables' cache keeps what it parsed and what it fetched, e.g. every element of
        // a big set already in the kernel that an auto-merge set declaration made it read:
        // let it go.
        reset();
        return err;
    }
    if (check_only) {
        // The big sets' elements are ours (parsed, merged, formatted by the generator): the
        // kernel is asked about everything else.
        return run_text(split->skeleton, true);
    }
    // Three transactions, none of which lets a packet meet a half-filled set: the table with
    // its sets (big ones empty) and no chains, which does nothing to packets; the elements;
    // then the chains. A failure after the first removes the table: the state before.
    std::string err = run_text(split->sets_stage, false);
    if (!err.empty()) {
        return err;
    }
    err = load_set_elements(batch, *split);
    if (err.empty()) {
        err = run_text(split->rules_stage, false);
    }
    if (!err.empty()) {
        std::string undo = delete_table(split->table);
        return err + (undo.empty() ? "" : "\nand removing the half-built table failed: " + undo);
    }
    return {};
}

std::string NftContext::fill_sets(const std::string& batch,
                                  const std::map<std::string, std::string>& names) {
    std::optional<SplitBatch> split = split_big_sets(batch, 1);  // small ones too
    std::string create = add_set_commands(batch, names);
    if (!split || create.empty()) {
        return "filling new sets: not a generator batch with big sets";
    }
    std::erase_if(split->sets, [&](const BigSet& s) { return names.count(s.name) == 0; });
    for (BigSet& s : split->sets) {
        s.name = names.at(s.name);  // the elements are read from `batch`, sent to the new set
    }
    // Flushed too: a set of that name left by an earlier failure starts empty.
    for (const auto& [_, name] : names) {
        create += "flush set inet " + split->table + " " + name + "\n";
    }
    std::string err = run_text(create, false);
    if (err.empty()) {
        err = load_set_elements(batch, *split);
    }
    reset();
    if (!err.empty()) {
        std::string undo = drop_sets(batch, names);
        return err + (undo.empty() ? "" : "\nand removing the new sets failed: " + undo);
    }
    return {};
}

std::string NftContext::drop_sets(const std::string& batch,
                                  const std::map<std::string, std::string>& names) {
    std::string cmd = add_set_commands(batch, names);
    // A generator batch starts "add table inet T\n".
    const std::string head = "add table inet ";
    std::string table = batch.substr(head.size(), batch.find('\n') - head.size());
    if (cmd.empty() || table_state(table) != 1) {
        return {};  // nothing to drop (adding the sets would create the table)
    }
    // Added first, so the delete succeeds whether or not they exist.
    for (const auto& [_, name] : names) {
        cmd += "delete set inet " + table + " " + name + "\n";
    }
    std::string err = run_text(cmd, false);
    reset();
    return err;
}

void NftContext::reset() {
    nft_ctx* fresh = nft_ctx_new(NFT_CTX_DEFAULT);
    if (fresh == nullptr || nft_ctx_buffer_output(fresh) != 0 || nft_ctx_buffer_error(fresh) != 0) {
        if (fresh != nullptr) {
            nft_ctx_free(fresh);
        }
        return;  // keep the old one
    }
    nft_ctx_free(ctx_);
    ctx_ = fresh;
}

std::string NftContext::run_text(const std::string& batch, bool check_only) {
    // The batch goes in through a memfd read as a file: still one transaction, but nft's error
    // locations then carry true line numbers (for buffers nft 1.0.6 shows the first line).
    int fd = memfd_create("tpengine-batch", MFD_CLOEXEC);
    if (fd < 0) {
        return std::string("memfd_create: ") + std::strerror(errno);
    }
    size_t done = 0;
    while (done < batch.size()) {
        ssize_t n = write(fd, batch.data() + done, batch.size() - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            int e = errno;
            close(fd);
            return std::string("writing the batch to a memfd: ") + std::strerror(e);
        }
        done += static_cast<size_t>(n);
    }
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    nft_ctx_set_dry_run(ctx_, check_only);
    int rc = nft_run_cmd_from_filename(ctx_, path.c_str());
    nft_ctx_set_dry_run(ctx_, false);
    close(fd);
    const char* out = nft_ctx_get_output_buffer(ctx_);  // read to reset it
    (void)out;
    const char* err_text = nft_ctx_get_error_buffer(ctx_);
    std::string error = err_text != nullptr ? err_text : "";
    // Name the places "batch:LINE:COL" rather than the memfd path.
    for (size_t p = 0; (p = error.find(path + ":", p)) != std::string::npos;) {
        error.replace(p, path.size(), "batch");
    }
    if (rc == 0) {
        return {};
    }
    if (error.empty()) {
        error = "nft rejected the batch (no message)\n";
    }
    return explain_nft_error(error, batch);
}

int NftContext::table_state(const std::string& name) {
    // Asked over nfnetlink directly: any nft listing command loads the whole ruleset into
    // libnftables' cache first, which takes seconds with a 100,000-element set.
    mnl_socket* sock = mnl_socket_open(NETLINK_NETFILTER);
    if (sock == nullptr) {
        return -errno;
    }
    int state = -EIO;  // no answer at all
    if (mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) != 0) {
        state = -errno;
    } else {
        char buf[MNL_SOCKET_BUFFER_SIZE];
        nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
        nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE;
        nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
        nlh->nlmsg_seq = 1;
        auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
        nfg->nfgen_family = NFPROTO_INET;
        nfg->version = NFNETLINK_V0;
        mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, name.c_str());
        const uint32_t portid = mnl_socket_get_portid(sock);
        if (mnl_socket_sendto(sock, nlh, nlh->nlmsg_len) >= 0) {
            bool done = false;
            while (!done) {
                ssize_t n = mnl_socket_recvfrom(sock, buf, sizeof buf);
                if (n <= 0) {
                    break;
                }
                int len = static_cast<int>(n);
                for (auto* msg = reinterpret_cast<const nlmsghdr*>(buf); mnl_nlmsg_ok(msg, len);
                     msg = mnl_nlmsg_next(msg, &len)) {
                    if (msg->nlmsg_pid != portid) {
                        continue;
                    }
                    if (msg->nlmsg_type == NLMSG_ERROR) {
                        done = true;  // the ack after the table, or the error instead of it
                        auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(msg));
                        if (err->error == -ENOENT) {
                            state = 0;
                        } else if (err->error != 0) {
                            state = err->error;
                        }
                        break;
                    }
                    if (msg->nlmsg_type == ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE)) {
                        state = 1;
                    }
                }
            }
        }
    }
    mnl_socket_close(sock);
    return state;
}

std::string NftContext::delete_table(const std::string& name, bool* deleted) {
    int state = table_state(name);
    if (deleted != nullptr) {
        *deleted = false;
    }
    if (state < 0) {
        return "cannot look for table inet " + name + ": " + std::strerror(-state) +
               (state == -EPERM ? " (needs root or CAP_NET_ADMIN)" : "");
    }
    if (state == 0) {
        return {};
    }
    // Declaring it first makes the delete succeed even if it vanished since the check.
    std::string cmd = "table inet " + name + " {}\ndelete table inet " + name + "\n";
    std::string err;
    if (run_raw(cmd, nullptr, &err) != 0) {
        return "cannot delete table inet " + name + ":\n" + err;
    }
    if (deleted != nullptr) {
        *deleted = true;
    }
    return {};
}

std::string explain_nft_error(const std::string& error, const std::string& batch) {
    // nft names places as "batch:LINE:COL-COL: Error: ..."; collect the LINE numbers. A
    // refused transaction repeats its error for every object: show the first few only.
    constexpr int kMaxErrors = 6;
    std::set<int> lines;
    std::string text;
    std::istringstream in(error);
    std::string line;
    int errors = 0;
    while (std::getline(in, line)) {
        const std::string tag = "batch:";
        if (line.find("Error:") != std::string::npos) {
            ++errors;
        }
        if (errors > kMaxErrors) {
            continue;
        }
        if (line.rfind(tag, 0) == 0) {
            size_t p = tag.size();
            int n = 0;
            bool digits = false;
            while (p < line.size() && std::isdigit(static_cast<unsigned char>(line[p]))) {
                n = n * 10 + (line[p] - '0');
                digits = true;
                ++p;
            }
            if (digits && p < line.size() && line[p] == ':') {
                lines.insert(n);
            }
        }
        text += "  " + line + "\n";
    }
    if (errors > kMaxErrors) {
        text += "  (" + std::to_string(errors - kMaxErrors) + " more errors)\n";
    }
    std::string result = "nft rejected the batch:\n" + text;
    if (lines.empty()) {
        return result;
    }
    std::vector<std::string> batch_lines;
    std::istringstream bin(batch);
    while (std::getline(bin, line)) {
        batch_lines.push_back(line);
    }
    result += "batch lines it refers to:\n";
    for (int n : lines) {
        if (n >= 1 && static_cast<size_t>(n) <= batch_lines.size()) {
            char num[16];
            std::snprintf(num, sizeof num, "%6d | ", n);
            result += num + batch_lines[static_cast<size_t>(n) - 1] + "\n";
        }
    }
    return result;
}

}  // namespace tp::config
