#ifndef SLUICE_DIGEST_H
#define SLUICE_DIGEST_H
#include <stddef.h>
#include <stdint.h>

/* SHA-256 (FIPS 180-4), streamed: init, update any number of times, final. */
typedef struct {
    uint32_t state[8];
    uint64_t length;
    uint8_t pending[64];
    size_t pending_count;
} sluice_sha256;

void sluice_sha256_init(sluice_sha256 *hash);
void sluice_sha256_update(sluice_sha256 *hash, const uint8_t *bytes, size_t count);
/* Writes the 32-byte digest. */
void sluice_sha256_final(sluice_sha256 *hash, uint8_t digest[32]);

#endif
