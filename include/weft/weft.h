/* weft.h - the umbrella header: an app includes this and nothing else.
 *
 * weft is a local-first sync engine: every device keeps a durable replica of
 * CRDT operations stamped with hybrid logical clocks, and devices exchange
 * only the operations the other side lacks.
 *
 * Invariants: none (headers only).
 * Thread-safety: stated per type in each header.
 */
#ifndef WEFT_H
#define WEFT_H

#include <weft/weft_err.h>
#include <weft/weft_export.h>
#include <weft/weft_store.h>
#include <weft/weft_sync.h>

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0

#ifdef __cplusplus
extern "C" {
#endif

/** "0.1.0". Static. */
WEFT_API const char *weft_version(void);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_H */
