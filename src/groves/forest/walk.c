/* The serve kernel's walk (groves.forest.kernel, groves.forest.native): every tree of a flat
 * forest, for every row, down to its leaf. The same steps as the numpy walk, one node at a
 * time: a node sends x left when x <= threshold (float32, exact: no -ffast-math); a leaf's
 * threshold is NaN, so it sends every row to its right child, itself, where the walk stops.
 * Rows are "wide": [x with NaN as -inf, x], and a node's feature indexes that width. At most
 * `depth` steps a tree: a tree's nodes point forward (groves.forest.format verifies them),
 * and out[t * n_rows + r] is row r's leaf in tree t.
 * Compiled with no flags beyond -O2 -fPIC -shared: any x86_64 or arm64 Linux. */
#include <stdint.h>

typedef struct {
    int32_t feature;
    float threshold;
    int32_t left;
    int32_t right;
} groves_node;

/* (tree, row) pairs walk LANES at a time, a step of each in turn: their node reads do not
 * wait on each other, so the processor overlaps their cache misses (a forest of 1,000 trees
 * is 64 MB of nodes: one pair at a time waits on every miss in turn). */
#define LANES 32

void groves_walk(const groves_node *nodes, const int32_t *roots, int64_t n_trees,
                 const float *wide, int64_t n_rows, int64_t width, int64_t depth,
                 int32_t *out) {
    int64_t total = n_trees * n_rows;
    for (int64_t base = 0; base < total; base += LANES) {
        int64_t lanes = total - base < LANES ? total - base : LANES;
        int32_t at[LANES];
        const float *x[LANES];
        for (int64_t l = 0; l < lanes; l++) {
            int64_t pair = base + l;  /* tree-major, as out is laid out */
            at[l] = roots[pair / n_rows];
            x[l] = wide + (pair % n_rows) * width;
        }
        for (int64_t step = 0; step < depth; step++) {
            int moving = 0;
            for (int64_t l = 0; l < lanes; l++) {
                const groves_node *node = nodes + at[l];
                int32_t next = x[l][node->feature] <= node->threshold ? node->left : node->right;
                moving |= next != at[l];
                at[l] = next;
            }
            if (!moving) {
                break;
            }
        }
        for (int64_t l = 0; l < lanes; l++) {
            out[base + l] = at[l];
        }
    }
}
