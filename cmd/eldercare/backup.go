package main

import "github.com/spf13/cobra"

func newBackupCmd() *cobra.Command  { return &cobra.Command{Use: "backup", Hidden: true} }
func newRestoreCmd() *cobra.Command { return &cobra.Command{Use: "restore", Hidden: true} }
