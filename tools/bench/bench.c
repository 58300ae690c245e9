/* tools/bench/bench.c - placeholder, being written. */
typedef int weft__placeholder_tools_bench_bench_c;
int main(void) { return 0; }
