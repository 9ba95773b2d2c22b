/* _huffman: a canonical Huffman code for the byte planes of a checkpoint that hold noise (a grid's value
 * differences grouped by width: `processor/history.py` `values_by_width`).
 *
 * Such a plane is a few thousand values below 2**width, skewed towards the small ones, with nothing for
 * LZ77 to match: deflate spends most of its time looking for matches there and still codes it a little worse
 * than a plain Huffman code of the plane's own histogram (its literal alphabet is 286 symbols wide, its
 * header codes the lengths of all of them). Here a plane is one histogram, one code and one pass.
 *
 *   encode(values, width) -> bytes
 *       `values`: bytes, each below 2**width (width 1 to 8). A byte of the width, a byte of the largest
 *       value; the code's lengths, 4 bits each (0: a symbol that does not occur, else 1 to 12), two to a
 *       byte, low nibble first, for symbols 0 to the largest value; then each value's canonical code (RFC
 *       1951's assignment: shorter codes first, then by symbol), most significant bit first, the last byte
 *       padded with 0 bits. No values: no bytes.
 *   decode(data, count) -> (bytearray, used)
 *       The `count` values from the start of `data`, and how many of its bytes they took (the coded planes
 *       of a checkpoint follow each other: the next starts there). ValueError when the width is not 1 to
 *       8, the largest value not below 2**width, the lengths are not a prefix code, a code is not one of
 *       them, the data ends before the values do, or a padding bit is not 0.
 *
 * The code is limited to 12 bits (a table of up to 4096 windows decodes a value or two a step): when the
 * optimal code is longer, the counts are halved (kept at least 1) and it is built again, at a cost of a
 * fraction of a percent on planes whose rarest values are thousands of times rarer than their commonest.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_BITS 12
#define MAX_SYMBOLS 256

/* Code lengths of an optimal prefix code for `counts` (a symbol of count 0 gets 0) limited to MAX_BITS.
 * The two-queue construction: the leaves sorted by count (then symbol: the same code on every machine),
 * and the nodes made from them, which come in order of weight by themselves. */
static void code_lengths(const uint64_t *counts_in, int symbols, uint8_t *lengths) {
    uint64_t counts[MAX_SYMBOLS];
    memcpy(counts, counts_in, sizeof(uint64_t) * (size_t)symbols);
    memset(lengths, 0, (size_t)symbols);
    for (;;) {
        uint64_t leaf[MAX_SYMBOLS]; /* count << 8 | symbol, sorted ascending */
        int m = 0;
        for (int s = symbols - 1; s >= 0; s--) { /* from the top: a plane's larger values are the rarer */
            if (counts[s]) {
                uint64_t key = counts[s] << 8 | (uint64_t)s;
                int i = m++;
                while (i > 0 && leaf[i - 1] > key) { /* so mostly none to move */
                    leaf[i] = leaf[i - 1];
                    i--;
                }
                leaf[i] = key;
            }
        }
        if (m == 0) {
            return;
        }
        if (m == 1) {
            lengths[leaf[0] & 0xFF] = 1;
            return;
        }
        uint64_t weight[MAX_SYMBOLS];
        int leaf_parent[MAX_SYMBOLS], node_parent[MAX_SYMBOLS];
        int next_leaf = 0, next_node = 0;
        for (int k = 0; k < m - 1; k++) {
            uint64_t sum = 0;
            for (int pick = 0; pick < 2; pick++) {
                if (next_leaf < m && (next_node >= k || (leaf[next_leaf] >> 8) <= weight[next_node])) {
                    sum += leaf[next_leaf] >> 8;
                    leaf_parent[next_leaf++] = k;
                } else {
                    sum += weight[next_node];
                    node_parent[next_node++] = k;
                }
            }
            weight[k] = sum;
        }
        uint8_t depth[MAX_SYMBOLS];
        depth[m - 2] = 0; /* the root: the last node made */
        for (int k = m - 3; k >= 0; k--) {
            depth[k] = (uint8_t)(depth[node_parent[k]] + 1);
        }
        int longest = 0;
        for (int i = 0; i < m; i++) {
            int d = depth[leaf_parent[i]] + 1;
            longest = d > longest ? d : longest;
            lengths[leaf[i] & 0xFF] = (uint8_t)d;
        }
        if (longest <= MAX_BITS) {
            return;
        }
        for (int s = 0; s < symbols; s++) {
            counts[s] = (counts[s] + 1) / 2; /* 0 stays 0, the rest stay at least 1 */
        }
    }
}

/* Canonical codes of `lengths` (RFC 1951, 3.2.2). */
static void canonical_codes(const uint8_t *lengths, int symbols, uint16_t *codes) {
    int count[MAX_BITS + 1] = {0};
    int next[MAX_BITS + 1];
    for (int s = 0; s < symbols; s++) {
        count[lengths[s]]++;
    }
    count[0] = 0;
    int code = 0;
    for (int bits = 1; bits <= MAX_BITS; bits++) {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    for (int s = 0; s < symbols; s++) {
        if (lengths[s]) {
            codes[s] = (uint16_t)next[lengths[s]]++;
        }
    }
}

/* `word` as 8 big-endian bytes at `at`: one store. */
static inline void put_big_endian_64(uint8_t *at, uint64_t word) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    word = __builtin_bswap64(word);
    memcpy(at, &word, sizeof word);
#else
    for (int b = 0; b < 8; b++) {
        at[b] = (uint8_t)(word >> (56 - 8 * b));
    }
#endif
}

/* How often each byte value occurs in `v`: four tables counted in turn (a run of one value would otherwise
 * wait on its own count's last store at every step), summed at the end. */
static void histogram(const uint8_t *v, Py_ssize_t n, uint64_t *counts) {
    uint32_t part[4][MAX_SYMBOLS];
    Py_ssize_t i = 0;
    while (i < n) {
        Py_ssize_t end = n - i > ((Py_ssize_t)1 << 30) ? i + ((Py_ssize_t)1 << 30) : n; /* no uint32 overflow */
        memset(part, 0, sizeof part);
        for (; i + 4 <= end; i += 4) {
            part[0][v[i]]++;
            part[1][v[i + 1]]++;
            part[2][v[i + 2]]++;
            part[3][v[i + 3]]++;
        }
        for (; i < end; i++) {
            part[0][v[i]]++;
        }
        for (int s = 0; s < MAX_SYMBOLS; s++) {
            counts[s] += (uint64_t)part[0][s] + part[1][s] + part[2][s] + part[3][s];
        }
    }
}

/* The 8 bytes at `at` as a big-endian number (the first byte highest): one load. */
static inline uint64_t big_endian_word(const uint8_t *at) {
    uint64_t word;
    memcpy(&word, at, sizeof word);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    word = __builtin_bswap64(word);
#elif !defined(__BYTE_ORDER__)
    word = 0;
    for (int b = 0; b < 8; b++) {
        word = word << 8 | at[b];
    }
#endif
    return word;
}

static int check_width(int width) {
    if (width < 1 || width > 8) {
        PyErr_Format(PyExc_ValueError, "huffman: a width of %d bits (1 to 8)", width);
        return -1;
    }
    return 0;
}

static PyObject *encode(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer in;
    int width;
    if (!PyArg_ParseTuple(args, "y*i", &in, &width)) {
        return NULL;
    }
    PyObject *result = NULL;
    const uint8_t *v = in.buf;
    Py_ssize_t n = in.len;
    if (check_width(width) < 0) {
        goto done;
    }
    int symbols = 1 << width;
    if (n == 0) {
        result = PyBytes_FromStringAndSize(NULL, 0);
        goto done;
    }
    uint64_t counts[MAX_SYMBOLS] = {0};
    histogram(v, n, counts);
    for (int s = symbols; s < MAX_SYMBOLS; s++) {
        if (counts[s]) {
            PyErr_Format(PyExc_ValueError, "huffman: a value of %d in an alphabet of %d symbols", s, symbols);
            goto done;
        }
    }
    uint8_t lengths[MAX_SYMBOLS];
    uint16_t codes[MAX_SYMBOLS];
    code_lengths(counts, symbols, lengths);
    canonical_codes(lengths, symbols, codes);
    uint64_t bits = 0;
    for (int s = 0; s < symbols; s++) {
        bits += counts[s] * lengths[s];
    }
    int last = symbols - 1; /* the largest value: lengths are written up to it */
    while (counts[last] == 0) {
        last--;
    }
    Py_ssize_t head = 2 + (last + 2) / 2;
    Py_ssize_t size = head + (Py_ssize_t)((bits + 7) / 8);
    result = PyBytes_FromStringAndSize(NULL, size + 8); /* 8 spare: the loop writes 64 bits at a time */
    if (result == NULL) {
        goto done;
    }
    uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
    memset(out, 0, (size_t)head);
    out[0] = (uint8_t)width;
    out[1] = (uint8_t)last;
    for (int s = 0; s <= last; s++) {
        out[2 + (s >> 1)] |= (uint8_t)(lengths[s] << ((s & 1) << 2));
    }
    /* Codes and lengths in one word per symbol: the loop reads one table. */
    uint32_t packed[MAX_SYMBOLS];
    for (int s = 0; s < symbols; s++) {
        packed[s] = ((uint32_t)codes[s] << 8) | lengths[s];
    }
    uint8_t *at = out + head;
    uint64_t acc = 0; /* the pending bits, in its low `pending` bits (the bits above them: not used) */
    int pending = 0;  /* below 8 at the start of each 4 values: with 4 codes of at most 12 bits, 55 at most */
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4) { /* 4 values, then their whole bytes out with one store */
        uint32_t c0 = packed[v[i]], c1 = packed[v[i + 1]], c2 = packed[v[i + 2]], c3 = packed[v[i + 3]];
        /* The pairs apart, then together: `acc` waits on one shift for the 4 (at most 48 bits). */
        uint32_t len01 = (c0 & 0xFF) + (c1 & 0xFF), len23 = (c2 & 0xFF) + (c3 & 0xFF);
        uint64_t first = ((uint64_t)(c0 >> 8) << (c1 & 0xFF)) | (c1 >> 8);
        uint64_t second = ((uint64_t)(c2 >> 8) << (c3 & 0xFF)) | (c3 >> 8);
        acc = (acc << (len01 + len23)) | (first << len23) | second;
        pending += (int)(len01 + len23); /* 4 at least */
        put_big_endian_64(at, acc << (64 - pending)); /* the byte after the whole ones: written again next */
        at += pending >> 3;
        pending &= 7;
    }
    for (; i < n; i++) { /* at most 3 more: 7 + 36 bits */
        uint32_t c = packed[v[i]];
        acc = (acc << (c & 0xFF)) | (c >> 8);
        pending += (int)(c & 0xFF);
    }
    while (pending > 0) { /* the rest, left-aligned in its bytes, 0 bits after */
        int take = pending >= 8 ? 8 : pending;
        pending -= take;
        *at++ = (uint8_t)(((acc >> pending) & ((1u << take) - 1)) << (8 - take));
    }
    if (_PyBytes_Resize(&result, at - out) < 0) {
        result = NULL;
    }
done:
    PyBuffer_Release(&in);
    return result;
}

/* An entry of `pair_table`: the first value's byte, the second's, the first's code length (4 bits), the
 * length of both codes (the first's alone when there is no second; 4 bits), 1 when there is a second. 0: no
 * code starts the window. */
#define PAIR_FIRST_BITS_ONE (1u << 16)

/* The table of each `window`-bit window of the canonical code of `lengths` (symbols 0 to `last`, `codes`
 * their codes, `window` at least the longest): the code that starts it, and the one after that when it ends
 * inside the window too. The codes in order of (length, symbol) take consecutive runs of windows from 0 on
 * (RFC 1951's assignment), so the windows of a first code are those of each code short enough to follow it
 * within the window, in that order, then the first code alone: each entry is written once. */
static void pair_table(const uint8_t *lengths, int last, const uint16_t *codes, int window, uint32_t *table) {
    int order[MAX_SYMBOLS]; /* the symbols of a code by (length, symbol) */
    int up_to[MAX_BITS + 2] = {0}; /* how many of them are at most `bits` long, at [bits + 1] */
    for (int s = 0; s <= last; s++) {
        if (lengths[s]) {
            up_to[lengths[s] + 1]++;
        }
    }
    for (int bits = 1; bits <= MAX_BITS + 1; bits++) {
        up_to[bits] += up_to[bits - 1];
    }
    int place[MAX_BITS + 2];
    memcpy(place, up_to, sizeof place);
    for (int s = 0; s <= last; s++) {
        if (lengths[s]) {
            order[place[lengths[s]]++] = s;
        }
    }
    /* now up_to[bits + 1] counts the codes up to `bits` long; up_to[1]: none (no code of 0 bits) */
    uint32_t filled = 0;
    int codes_in = up_to[MAX_BITS + 1];
    for (int j = 0; j < codes_in; j++) {
        int first = order[j], len = lengths[first], rest = window - len;
        uint32_t *at = table + ((uint32_t)codes[first] << rest);
        uint32_t alone = (uint32_t)first | (uint32_t)len << 16 | (uint32_t)len << 20;
        uint32_t k = 0;
        for (int q = 0, pairs = up_to[rest + 1]; q < pairs; q++) {
            int second = order[q], len2 = lengths[second];
            uint32_t span = 1u << (rest - len2);
            uint32_t both = alone + ((uint32_t)second << 8) + ((uint32_t)len2 << 20) + (1u << 24);
            for (uint32_t end = k + span; k < end; k++) {
                at[k] = both;
            }
        }
        for (uint32_t end = 1u << rest; k < end; k++) {
            at[k] = alone;
        }
        filled += 1u << rest;
    }
    memset(table + filled, 0, sizeof(uint32_t) * ((1u << window) - filled));
}

static PyObject *decode(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer in;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*n", &in, &count)) {
        return NULL;
    }
    PyObject *result = NULL, *values = NULL;
    const uint8_t *data = in.buf;
    Py_ssize_t size = in.len;
    if (count < 0) {
        PyErr_Format(PyExc_ValueError, "huffman: a count of %zd values", count);
        goto done;
    }
    if (count == 0) {
        values = PyByteArray_FromStringAndSize(NULL, 0);
        result = values == NULL ? NULL : Py_BuildValue("(Nn)", values, (Py_ssize_t)0);
        goto done;
    }
    if (size < 1 || check_width(data[0]) < 0) {
        if (size < 1) {
            PyErr_SetString(PyExc_ValueError, "huffman: no bytes for the values");
        }
        goto done;
    }
    int symbols = 1 << data[0];
    if (size < 2 || data[1] >= symbols) {
        PyErr_Format(PyExc_ValueError, "huffman: %s", size < 2 ? "no byte for the largest value" : "the largest value is past the width");
        goto done;
    }
    int last = data[1];
    Py_ssize_t head = 2 + (last + 2) / 2;
    if (size < head) {
        PyErr_Format(PyExc_ValueError, "huffman: %zd bytes, shorter than the %zd of the code's lengths", size, head);
        goto done;
    }
    if (count / 8 > size - head) { /* a value takes a bit at least: no allocation past what the data can hold */
        PyErr_Format(PyExc_ValueError, "huffman: %zd values cannot be in the %zd bytes after the code's lengths",
                     count, size - head);
        goto done;
    }
    uint8_t lengths[MAX_SYMBOLS] = {0};
    uint32_t kraft = 0; /* in units of 2**-MAX_BITS */
    for (int s = 0; s <= last; s++) {
        lengths[s] = (uint8_t)((data[2 + (s >> 1)] >> ((s & 1) << 2)) & 15);
        if (lengths[s] > MAX_BITS) {
            PyErr_Format(PyExc_ValueError, "huffman: symbol %d has a code of %d bits (at most %d)", s, lengths[s],
                         MAX_BITS);
            goto done;
        }
        if (lengths[s]) {
            kraft += 1u << (MAX_BITS - lengths[s]);
        }
    }
    if (!(last & 1) && (data[head - 1] >> 4)) {
        PyErr_SetString(PyExc_ValueError, "huffman: the lengths' padding is not 0");
        goto done;
    }
    if (kraft == 0 || kraft > (1u << MAX_BITS)) {
        PyErr_SetString(PyExc_ValueError, "huffman: the code's lengths are not a prefix code");
        goto done;
    }
    uint16_t codes[MAX_SYMBOLS];
    canonical_codes(lengths, symbols, codes);
    int bits = 0; /* the longest code */
    for (int s = 0; s <= last; s++) {
        bits = lengths[s] > bits ? lengths[s] : bits;
    }
    /* The window: the longest code at least, and wider (up to MAX_BITS) for a plane of more values, whose
     * table (one entry a window) pays for itself in values that come two to a lookup. */
    int window = bits;
    while (window < MAX_BITS && ((Py_ssize_t)4 << window) <= count) {
        window++;
    }
    uint32_t table[1 << MAX_BITS];
    pair_table(lengths, last, codes, window, table);
    values = PyByteArray_FromStringAndSize(NULL, count);
    if (values == NULL) {
        goto done;
    }
    uint8_t *out = (uint8_t *)PyByteArray_AS_STRING(values);
    const uint8_t *at = data + head, *end = data + size;
    uint64_t acc = 0; /* left-aligned: the next bit is bit 63 */
    int have = 0;     /* bits of `acc` that came from the data */
    int shift = 64 - window;
    Py_ssize_t i = 0;
    uint32_t bad = 0; /* a window that starts no code was met */
    /* While 8 bytes remain: top `acc` up to 56 bits or more with one load (the bits under them are the next
     * byte's first, which the next load ORs in again), then 4 lookups of at most 12 bits each, a value or two
     * each (both bytes written, the second overwritten by the next lookup when it is not one: 8 values of
     * room kept). */
    while (count - i >= 8 && end - at >= 8) {
        acc |= big_endian_word(at) >> have;
        at += (63 - have) >> 3;
        have |= 56;
        for (int k = 0; k < 4; k++) {
            uint32_t e = table[acc >> shift];
            bad |= e < PAIR_FIRST_BITS_ONE;
            out[i] = (uint8_t)e;
            out[i + 1] = (uint8_t)(e >> 8);
            int len = (e >> 20) & 15;
            i += 1 + (e >> 24);
            acc <<= len;
            have -= len;
        }
        if (bad) {
            break;
        }
    }
    for (; i < count && !bad; i++) { /* the rest, a value at a time (the first of each entry) */
        while (have <= 56 && at < end) {
            acc |= (uint64_t)*at++ << (56 - have);
            have += 8;
        }
        uint32_t e = table[acc >> shift];
        int len = (e >> 16) & 15;
        bad = len == 0;
        if (bad || len > have) {
            break;
        }
        out[i] = (uint8_t)e;
        acc <<= len;
        have -= len;
    }
    /* What the values took: the bytes read less the bits read and not used, rounded up to a byte. The bits
     * after the last code up to that byte's end are the padding, the first of what is left in `acc`. */
    Py_ssize_t used_bits = 8 * (at - data) - have;
    int pad = (int)(-used_bits & 7);
    if (bad || i < count) {
        PyErr_Format(PyExc_ValueError, "huffman: %zd values: %s", count,
                     bad ? "a code not in the table" : "the data ends inside a code");
    } else if (pad && (acc >> (64 - pad))) {
        PyErr_Format(PyExc_ValueError, "huffman: %zd values: the padding is not 0", count);
    } else {
        result = Py_BuildValue("(On)", values, (used_bits + 7) / 8);
    }
    Py_CLEAR(values);
done:
    PyBuffer_Release(&in);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", encode, METH_VARARGS, "A byte plane as its code's lengths and its canonical Huffman codes."},
    {"decode", decode, METH_VARARGS, "The values of `encode`'s bytes back."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_huffman", "A canonical Huffman code for noisy byte planes.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__huffman(void) { return PyModule_Create(&module); }
