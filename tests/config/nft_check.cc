// tp_nft_check FILE...: runs each nft batch through libnftables in dry-run (check) mode, as
// `nft -c -f` does: the kernel validates the transaction and nothing is committed. Run it
// inside a scratch network namespace. Exit 0 when every file passes.

#include <nftables/libnftables.h>

#include <cstdio>

int main(int argc, char** argv) {
    int failed = 0;
    for (int i = 1; i < argc; ++i) {
        nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
        if (ctx == nullptr) {
            std::fprintf(stderr, "tp_nft_check: nft_ctx_new failed\n");
            return 2;
        }
        nft_ctx_set_dry_run(ctx, true);
        nft_ctx_buffer_error(ctx);
        int rc = nft_run_cmd_from_filename(ctx, argv[i]);
        if (rc != 0) {
            std::fprintf(stderr, "FAIL %s\n%s", argv[i], nft_ctx_get_error_buffer(ctx));
            ++failed;
        } else {
            std::printf("ok   %s\n", argv[i]);
        }
        nft_ctx_free(ctx);
    }
    return failed == 0 ? 0 : 1;
}
