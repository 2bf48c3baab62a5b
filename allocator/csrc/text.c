/* Messages and JSON text without stdio: printf and friends may allocate, and an allocator that
 * allocates while it reports a problem (possibly under its own lock) can deadlock or recurse. */
#include "marl_internal.h" /* first: it defines _GNU_SOURCE */

#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* One line on stderr: "marl-alloc: " and up to four pieces (NULL pieces are skipped). */
void say(const char *a, const char *b, const char *c, const char *d) {
    const char *parts[5] = {"marl-alloc: ", a, b, c, d};
    for (int i = 0; i < 5; i++)
        if (parts[i]) {
            ssize_t r = write(2, parts[i], strlen(parts[i]));
            (void)r;
        }
    ssize_t r = write(2, "\n", 1);
    (void)r;
}

/* Heap corruption or an invalid pointer: nothing sensible can continue, so abort (as glibc does). */
void die(const char *what, const void *ptr) {
    char hex[2 + 16 + 1] = "0x";
    uintptr_t v = (uintptr_t)ptr;
    for (int i = 0; i < 16; i++) hex[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
    hex[18] = 0;
    say(what, " at ", hex, NULL);
    abort();
}

/* Append s to buf (of len bytes, always NUL-terminated when len > 0) at offset at; returns the offset
 * the text would end at had buf been large enough (so callers can size a second attempt). */
size_t append(char *buf, size_t len, size_t at, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (at + i + 1 < len) buf[at + i] = s[i];
    if (len) buf[at + n < len ? at + n : len - 1] = 0;
    return at + n;
}

size_t append_u64(char *buf, size_t len, size_t at, uint64_t v) {
    char tmp[24], out[24];
    int i = 0;
    do tmp[i++] = (char)('0' + v % 10), v /= 10;
    while (v);
    for (int j = 0; j < i; j++) out[j] = tmp[i - 1 - j];
    out[i] = 0;
    return append(buf, len, at, out);
}

size_t append_json_str(char *buf, size_t len, size_t at, const char *s) {
    at = append(buf, len, at, "\"");
    char one[3] = {0, 0, 0};
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            one[0] = '\\', one[1] = *s;
        } else if ((unsigned char)*s < 32) {
            one[0] = '?', one[1] = 0;
        } else {
            one[0] = *s, one[1] = 0;
        }
        at = append(buf, len, at, one);
    }
    return append(buf, len, at, "\"");
}

const char *error_text(int err) {
    /* strerrordesc_np (glibc >= 2.32): the untranslated text, a table lookup that never allocates */
    const char *s = strerrordesc_np(err);
    return s ? s : "unknown error";
}
