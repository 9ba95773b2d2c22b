module gen_large_heap

go 1.26
