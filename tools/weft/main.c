/* tools/weft/main.c - placeholder, being written. */
typedef int weft__placeholder_tools_weft_main_c;
int main(void) { return 0; }
