module versionedleak

go 1.26
