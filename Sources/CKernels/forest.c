#include "sluice_kernels.h"

#include <math.h>

enum { LEQ, LT, GTE, GT, EQ, NEQ, LEAF };

/* The leaf a row reaches in the tree rooted at `root`. */
static inline const sluice_tree_node *walk(const sluice_tree_node *nodes, const double *wide, int root, const double *row,
                                           int all_less_or_equal) {
    const sluice_tree_node *node = nodes + root;
    if (all_less_or_equal && !wide) {
        /* The common case (scikit-learn, XGBoost, LightGBM numeric splits): one comparison. */
        while (node->mode != LEAF) {
            double v = row[node->feature];
            int go = (v <= (double)node->threshold) | (node->missing_goes_true & (v != v));
            node = go ? nodes + node->true_child : node + 1;
        }
        return node;
    }
    while (node->mode != LEAF) {
        double v = row[node->feature];
        double t = wide ? wide[node - nodes] : (double)node->threshold;
        int go;
        switch (node->mode) {
        case LEQ: go = v <= t; break;
        case LT: go = v < t; break;
        case GTE: go = v >= t; break;
        case GT: go = v > t; break;
        case EQ: go = v == t; break;
        default: go = v != t; break;
        }
        go |= node->missing_goes_true & (v != v);
        node = go ? nodes + node->true_child : node + 1;
    }
    return node;
}

#define LANES 16

/* The leaves LANES consecutive rows reach in one tree whose branches all compare with <=, at
 * most `depth` branches deep: every lane steps `depth` times without a branch, a lane at a leaf
 * staying there (it reads feature 0, which every row has, and ignores it). */
static inline void walk_lanes(const sluice_tree_node *nodes, int root, int depth, const double *x, long columns,
                              const sluice_tree_node **leaves) {
    const sluice_tree_node *at[LANES];
    for (int l = 0; l < LANES; l++) at[l] = nodes + root;
    for (int step = 0; step < depth; step++) {
        for (int l = 0; l < LANES; l++) {
            const sluice_tree_node *node = at[l];
            int branch = node->mode != LEAF;
            double v = x[l * columns + (branch ? node->feature : 0)];
            int go = (v <= (double)node->threshold) | (node->missing_goes_true & (v != v));
            const sluice_tree_node *next = go ? nodes + node->true_child : node + 1;
            at[l] = branch ? next : node;
        }
    }
    for (int l = 0; l < LANES; l++) leaves[l] = at[l];
}

/* Adds a leaf's weights to its row's targets. */
#define ADD_LEAF(LEAF, ROW)                                                                                          \
    for (int w = (LEAF)->true_child; w < (LEAF)->true_child + (LEAF)->feature; w++) {                                \
        long slot = (ROW) * targets + leaf_targets[w];                                                               \
        __typeof__(scores[0]) weight = (__typeof__(scores[0]))leaf_weights[w];                                       \
        if (aggregate == 0) scores[slot] += weight;                                                                  \
        else if (!reached[slot] || (aggregate == 1 ? weight < scores[slot] : weight > scores[slot]))                 \
            scores[slot] = weight;                                                                                   \
        reached[slot] = 1;                                                                                           \
    }

#define FOREST_SCORES(NAME, SCORE)                                                                                   \
    void NAME(const sluice_tree_node *nodes, const double *wide, int all_less_or_equal, const int *roots,           \
              const int *depths, long root_count, const int *leaf_targets, const double *leaf_weights, long targets, int aggregate,     \
              const double *x, long rows, long columns, SCORE *scores, unsigned char *reached) {                     \
        for (long i = 0; i < rows * targets; i++) { scores[i] = 0; reached[i] = 0; }                                 \
        /* Trees outside, rows inside in blocks: a tree's nodes stay in cache across a block. */                    \
        const long block = 64;                                                                                       \
        for (long start = 0; start < rows; start += block) {                                                         \
            long end = start + block < rows ? start + block : rows;                                                  \
            for (long t = 0; t < root_count; t++) {                                                                  \
                long row = start;                                                                                    \
                const sluice_tree_node *leaves[LANES];                                                               \
                if (all_less_or_equal && !wide && columns > 0) {                                                   \
                    /* Sixteen rows walk the tree in step: their loads overlap instead of waiting in turn. */       \
                    for (; row + LANES <= end; row += LANES) {                                                       \
                        walk_lanes(nodes, roots[t], depths[t], x + row * columns, columns, leaves);                             \
                        for (int l = 0; l < LANES; l++) ADD_LEAF(leaves[l], row + l);                                 \
                    }                                                                                                \
                }                                                                                                    \
                for (; row < end; row++) {                                                                           \
                    const sluice_tree_node *leaf = walk(nodes, wide, roots[t], x + row * columns, all_less_or_equal); \
                    ADD_LEAF(leaf, row);                                                                             \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }

FOREST_SCORES(sluice_forest_scores_f32, float)
FOREST_SCORES(sluice_forest_scores_f64, double)
