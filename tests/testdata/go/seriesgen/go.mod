module seriesgen

go 1.26
