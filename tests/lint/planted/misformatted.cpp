// Planted for the lint tests: formatted against .clang-format (a brace, spacing, two statements a line).
int planted_misformatted(int a){ if(a>1){return a*2;} return a; }
